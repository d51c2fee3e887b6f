using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Client.Tests.Infrastructure;

/// <summary>
/// One real silo (<c>dotnet OrleansTwoPC.Silo.dll serve</c>, copied beside the tests by the project reference)
/// in its own process, on a PostgreSQL server under its own database prefix and cluster id. Disposing kills it.
/// </summary>
public sealed class SiloServer : IAsyncDisposable
{
    /// <summary>Orleans membership status "Active" in <c>orleansmembershiptable.status</c>.</summary>
    private const int ActiveStatus = 3;

    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private SiloServer(Process process, string adminConnectionString, string prefix, string clusterId, int siloPort)
    {
        _process = process;
        AdminConnectionString = adminConnectionString;
        Prefix = prefix;
        ClusterId = clusterId;
        SiloPort = siloPort;
    }

    public string AdminConnectionString { get; }
    public string Prefix { get; }
    public string ClusterId { get; }
    public int SiloPort { get; }

    /// <summary>The tpc arguments that reach this silo's databases and cluster.</summary>
    public string[] TpcSettings =>
    [
        $"--ConnectionStrings:PostgresServer={AdminConnectionString}",
        $"--TwoPC:DatabasePrefix={Prefix}",
        $"--TwoPC:ClusterId={ClusterId}",
    ];

    /// <summary>The last lines the silo printed (stdout and stderr), for failure messages.</summary>
    public string Output => string.Join(Environment.NewLine, _output);

    /// <summary>Starts a silo with a unique prefix and cluster id and waits until it is Active in membership.</summary>
    public static async Task<SiloServer> StartAsync(string adminConnectionString, string name, TimeSpan timeout)
    {
        var unique = $"{name}_{Guid.NewGuid():N}"[..(name.Length + 13)].ToLowerInvariant();
        var prefix = $"c_{unique}";
        var clusterId = $"client-{unique}";
        var siloPort = FreePort();
        var gatewayPort = FreePort();
        var dll = Path.Combine(AppContext.BaseDirectory, "OrleansTwoPC.Silo.dll");
        if (!File.Exists(dll)) throw new FileNotFoundException("the silo is not next to the test assembly", dll);

        var start = new ProcessStartInfo(DotnetHost())
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        start.ArgumentList.Add(dll);
        start.ArgumentList.Add("serve");
        foreach (var argument in new[]
                 {
                     $"--ConnectionStrings:PostgresServer={adminConnectionString}",
                     $"--TwoPC:DatabasePrefix={prefix}",
                     $"--TwoPC:ClusterId={clusterId}",
                     $"--TwoPC:SiloPort={siloPort}",
                     $"--TwoPC:GatewayPort={gatewayPort}",
                     "--TwoPC:AdvertisedIp=127.0.0.1",
                     "--TwoPC:Logging:JsonFile=",
                     "--TwoPC:Logging:ConsoleLevel=Warning",
                     "--TwoPC:Recovery:SweepInterval=00:00:02",
                     "--TwoPC:Recovery:CoordinatorGrace=00:00:02",
                 })
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var key in start.Environment.Keys.Where(k =>
                     k.StartsWith("ConnectionStrings__", StringComparison.OrdinalIgnoreCase) || k.StartsWith("TwoPC__", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(key);
        }

        start.Environment["DOTNET_ENVIRONMENT"] = "Production";

        var process = new Process { StartInfo = start };
        var silo = new SiloServer(process, adminConnectionString, prefix, clusterId, siloPort);
        process.OutputDataReceived += (_, e) => silo.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => silo.Keep(e.Data is null ? null : "[stderr] " + e.Data);
        if (!process.Start()) throw new InvalidOperationException("could not start the silo process");
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await silo.WaitActiveAsync(timeout);
            return silo;
        }
        catch
        {
            await silo.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception ex)
        {
            Keep($"[test] kill: {ex.Message}");
        }
        finally
        {
            _process.Dispose();
        }
    }

    private async Task WaitActiveAsync(TimeSpan timeout)
    {
        var coordinator = PostgresTopology.DeriveDatabases(AdminConnectionString, Prefix).Coordinator;
        var deadline = DateTime.UtcNow + timeout;
        Exception? lastError = null;
        while (true)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"the silo exited with code {_process.ExitCode} before becoming active:{Environment.NewLine}{Output}");
            try
            {
                await using var connection = new NpgsqlConnection(coordinator);
                await connection.OpenAsync();
                await using var command = new NpgsqlCommand(
                    "SELECT count(*) FROM orleansmembershiptable WHERE deploymentid = @cluster AND port = @port AND status = @active", connection);
                command.Parameters.AddWithValue("cluster", ClusterId);
                command.Parameters.AddWithValue("port", SiloPort);
                command.Parameters.AddWithValue("active", ActiveStatus);
                if ((long)(await command.ExecuteScalarAsync())! > 0) return;
            }
            catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
            {
                lastError = ex; // the silo creates the database and the table while starting
            }

            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"the silo was not active within {timeout.TotalSeconds:0} s (last error: {lastError?.Message}):{Environment.NewLine}{Output}");
            await Task.Delay(200);
        }
    }

    private void Keep(string? line)
    {
        if (line is null) return;
        _output.Enqueue(line);
        while (_output.Count > 500) _output.TryDequeue(out _);
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try { return ((IPEndPoint)listener.LocalEndpoint).Port; }
        finally { listener.Stop(); }
    }

    private static string DotnetHost()
    {
        var current = Environment.ProcessPath;
        if (current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet") return current;
        var fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        return !string.IsNullOrEmpty(fromSdk) && File.Exists(fromSdk) ? fromSdk : "dotnet";
    }
}
