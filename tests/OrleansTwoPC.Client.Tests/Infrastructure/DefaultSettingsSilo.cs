using System.Collections.Concurrent;
using System.Diagnostics;
using Npgsql;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Client.Tests.Infrastructure;

/// <summary>
/// A real silo process (<c>dotnet OrleansTwoPC.Silo.dll serve</c>) with the shipped defaults: it is told only
/// where its databases and cluster are, its ports and roles, and to keep its logs on the console. No timeout,
/// membership or recovery setting is tuned (unlike <see cref="SiloServer"/>, which detects deaths fast).
/// </summary>
public sealed class DefaultSettingsSilo : IAsyncDisposable
{
    private const int KeptLines = 400;

    // Killed when the test process exits whatever happened, so no silo outlives a crashed test run.
    private static readonly ConcurrentDictionary<int, Process> Running = new();

    static DefaultSettingsSilo()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (var process in Running.Values)
            {
                try { if (!process.HasExited) process.Kill(entireProcessTree: true); } catch { /* best effort */ }
            }
        };
    }

    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private DefaultSettingsSilo(string name, Process process, int siloPort, string coordinatorDatabase, string clusterId)
    {
        Name = name;
        _process = process;
        SiloPort = siloPort;
        CoordinatorDatabase = coordinatorDatabase;
        ClusterId = clusterId;
    }

    public string Name { get; }
    public int SiloPort { get; }
    public string CoordinatorDatabase { get; }
    public string ClusterId { get; }
    public bool HasExited => _process.HasExited;

    public string Output => string.Join(Environment.NewLine, _output);

    public static DefaultSettingsSilo Start(string name, string adminConnectionString, string prefix, string clusterId, string roles)
    {
        var siloPort = ChildSilo.FreePort();
        var start = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        start.ArgumentList.Add(typeof(ChildSilo).Assembly.Location);
        start.ArgumentList.Add("serve");
        foreach (var setting in new[]
        {
            $"--ConnectionStrings:PostgresServer={adminConnectionString}",
            $"--TwoPC:DatabasePrefix={prefix}",
            $"--TwoPC:ClusterId={clusterId}",
            $"--TwoPC:SiloPort={siloPort}",
            $"--TwoPC:GatewayPort={ChildSilo.FreePort()}",
            "--TwoPC:AdvertisedIp=127.0.0.1",
            $"--TwoPC:Roles={roles}",
            "--TwoPC:Logging:JsonFile=",
        })
        {
            start.ArgumentList.Add(setting);
        }

        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("ConnectionStrings__", StringComparison.OrdinalIgnoreCase) || k.StartsWith("TwoPC__", StringComparison.OrdinalIgnoreCase) || k.StartsWith("Orleans__", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            start.Environment.Remove(key);
        }

        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var silo = new DefaultSettingsSilo(name, process, siloPort, PostgresTopology.DeriveDatabases(adminConnectionString, prefix).Coordinator, clusterId);
        process.OutputDataReceived += (_, e) => silo.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => silo.Keep(e.Data);
        if (!process.Start()) throw new InvalidOperationException($"could not start silo process {name}");
        Running[process.Id] = process;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return silo;
    }

    /// <summary>Waits until this silo is Active in the cluster's membership table.</summary>
    public async Task WaitActiveAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (_process.HasExited) throw new InvalidOperationException($"silo {Name} exited with code {_process.ExitCode}:{Environment.NewLine}{Output}");
            try
            {
                await using var connection = new NpgsqlConnection(CoordinatorDatabase);
                await connection.OpenAsync();
                await using var command = new NpgsqlCommand(
                    "SELECT count(*) FROM orleansmembershiptable WHERE deploymentid = @cluster AND port = @port AND status = @active", connection);
                command.Parameters.AddWithValue("cluster", ClusterId);
                command.Parameters.AddWithValue("port", SiloPort);
                command.Parameters.AddWithValue("active", ChildSilo.ActiveStatus);
                if ((long)(await command.ExecuteScalarAsync())! > 0) return;
            }
            catch (PostgresException)
            {
                // The membership table does not exist until the first silo created it.
            }

            if (DateTime.UtcNow > deadline) throw new TimeoutException($"silo {Name} not active within {timeout.TotalSeconds:0} s:{Environment.NewLine}{Output}");
            await Task.Delay(200);
        }
    }

    /// <summary>SIGKILL: the process dies at once, without any shutdown.</summary>
    public void Kill()
    {
        if (!_process.HasExited) _process.Kill(entireProcessTree: true);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            Kill();
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch
        {
            // Gone or going.
        }
        finally
        {
            Running.TryRemove(_process.Id, out _);
            _process.Dispose();
        }
    }

    private void Keep(string? line)
    {
        if (line is null) return;
        _output.Enqueue(line);
        while (_output.Count > KeptLines) _output.TryDequeue(out _);
    }

    private static string DotnetHost()
    {
        var current = Environment.ProcessPath;
        if (current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet") return current;
        var fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        return !string.IsNullOrEmpty(fromSdk) && File.Exists(fromSdk) ? fromSdk : "dotnet";
    }
}
