using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace OrleansTwoPC.Cluster.Tests.Processes;

/// <summary>Where a set of silo processes meets: one PostgreSQL server, one database prefix, one cluster id.</summary>
public sealed record ProcessClusterSettings(string AdminConnectionString, string DatabasePrefix, string ClusterId)
{
    public const string ServiceId = "OrleansTwoPC";

    /// <summary>The four databases the silos derive (and provision) from the prefix.</summary>
    public OrleansTwoPC.Storage.ServiceDatabases Databases =>
        OrleansTwoPC.Storage.PostgresTopology.DeriveDatabases(AdminConnectionString, DatabasePrefix);

    public static ProcessClusterSettings Unique(string adminConnectionString, string name)
    {
        var id = $"{name}_{Environment.ProcessId}_{Guid.NewGuid():N}"[..Math.Min(40, name.Length + 20)].ToLowerInvariant();
        return new ProcessClusterSettings(adminConnectionString, $"p_{id}", $"proc-{id}");
    }
}

/// <summary>
/// The real silo executable (<c>dotnet OrleansTwoPC.Silo.dll serve</c>) in its own OS process, configured
/// only through <c>--Key=Value</c> arguments. Its console output is kept for diagnostics. <see cref="Kill"/>
/// is SIGKILL: no shutdown code runs, sockets and database connections just vanish.
/// </summary>
public sealed class SiloProcess : IAsyncDisposable
{
    /// <summary>Orleans membership status "Active" in <c>orleansmembershiptable.status</c>.</summary>
    public const int ActiveStatus = 3;

    private const int MaxKeptLines = 2000;

    // Processes of this test run, killed when the test process exits whatever happened to the test.
    private static readonly ConcurrentDictionary<int, Process> Running = new();

    static SiloProcess()
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
    private readonly Stopwatch _age = Stopwatch.StartNew();

    private SiloProcess(string name, ProcessClusterSettings cluster, int siloPort, int gatewayPort, Process process)
    {
        Name = name;
        Cluster = cluster;
        SiloPort = siloPort;
        GatewayPort = gatewayPort;
        _process = process;
    }

    private void Started() => Pid = _process.Id;

    public string Name { get; }
    public ProcessClusterSettings Cluster { get; }
    public int SiloPort { get; }
    public int GatewayPort { get; }
    public int Pid { get; private set; }
    public bool HasExited => _process.HasExited;
    public bool WasKilled { get; private set; }

    /// <summary>The silo's console output (stdout and stderr, last lines).</summary>
    public string Output => string.Join(Environment.NewLine, _output);

    /// <summary>The silo assembly copied next to the test assembly (the test project references the silo project).</summary>
    public static string SiloDll
    {
        get
        {
            var path = Path.Combine(AppContext.BaseDirectory, "OrleansTwoPC.Silo.dll");
            if (!File.Exists(path)) throw new FileNotFoundException("the silo executable is not next to the test assembly", path);
            return path;
        }
    }

    /// <summary>Starts a silo process (fresh ports) and returns at once; see <see cref="WaitActiveAsync"/>.</summary>
    public static SiloProcess Start(string name, ProcessClusterSettings cluster, IReadOnlyDictionary<string, string>? extraSettings = null)
    {
        var siloPort = FreePort();
        var gatewayPort = FreePort();
        var settings = new Dictionary<string, string>
        {
            ["ConnectionStrings:PostgresServer"] = cluster.AdminConnectionString,
            ["TwoPC:DatabasePrefix"] = cluster.DatabasePrefix,
            ["TwoPC:ClusterId"] = cluster.ClusterId,
            ["TwoPC:ServiceId"] = ProcessClusterSettings.ServiceId,
            ["TwoPC:SiloPort"] = siloPort.ToString(),
            ["TwoPC:GatewayPort"] = gatewayPort.ToString(),
            ["TwoPC:AdvertisedIp"] = "127.0.0.1",
            // Declare a dead silo within a few seconds (as the in-process recovery fixture does).
            ["Orleans:Membership:ProbeTimeout"] = "00:00:01",
            ["Orleans:Membership:NumMissedProbesLimit"] = "1",
            ["Orleans:Membership:NumVotesForDeathDeclaration"] = "1",
            ["Orleans:Membership:TableRefreshTimeout"] = "00:00:02",
            ["Orleans:Membership:DeathVoteExpirationTimeout"] = "00:00:10",
            ["Orleans:Membership:IAmAliveTablePublishTimeout"] = "00:00:05",
            ["Orleans:Messaging:ResponseTimeout"] = "00:00:10",
            // Fast recovery: sweep every 2 s, in-doubt participants ask after 4 s.
            ["TwoPC:Recovery:SweepInterval"] = "00:00:02",
            ["TwoPC:Recovery:CoordinatorGrace"] = "00:00:02",
            ["TwoPC:Protocol:InDoubtTimeout"] = "00:00:04",
            ["TwoPC:Protocol:PrepareTimeout"] = "00:00:02",
            ["TwoPC:Protocol:RetryBaseDelay"] = "00:00:00.050",
            ["TwoPC:Protocol:RetryMaxDelay"] = "00:00:01",
            ["TwoPC:Logging:ConsoleLevel"] = "Warning",
            ["TwoPC:Logging:JsonFile"] = "",
        };
        foreach (var (key, value) in extraSettings ?? new Dictionary<string, string>()) settings[key] = value;

        var start = new ProcessStartInfo(DotnetHost())
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        start.ArgumentList.Add(SiloDll);
        start.ArgumentList.Add("serve");
        foreach (var (key, value) in settings) start.ArgumentList.Add($"--{key}={value}");
        // Nothing from the test's environment may redirect the silo to other databases.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("ConnectionStrings__", StringComparison.OrdinalIgnoreCase) || k.StartsWith("TwoPC__", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(key);
        start.Environment["DOTNET_ENVIRONMENT"] = "Production";

        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var silo = new SiloProcess(name, cluster, siloPort, gatewayPort, process);
        process.OutputDataReceived += (_, e) => silo.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => silo.Keep(e.Data is null ? null : "[stderr] " + e.Data);
        if (!process.Start()) throw new InvalidOperationException($"could not start silo process {name}");
        silo.Started();
        Running[silo.Pid] = process;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        silo.Keep($"[test] started pid {process.Id}: silo port {siloPort}, gateway port {gatewayPort}");
        return silo;
    }

    /// <summary>SIGKILL (Process.Kill on Linux): the process dies at once, without any shutdown.</summary>
    public void Kill()
    {
        if (_process.HasExited) return;
        WasKilled = true;
        Keep($"[test] SIGKILL at {_age.Elapsed.TotalSeconds:0.0} s");
        _process.Kill(entireProcessTree: true);
    }

    /// <summary>Waits until this silo is Active in the cluster's membership table (polled in PostgreSQL).</summary>
    public async Task WaitActiveAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        Exception? lastError = null;
        while (true)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"silo process {Name} exited with code {_process.ExitCode} before becoming active:{Environment.NewLine}{Output}");
            try
            {
                if (await IsActiveAsync()) return;
            }
            catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
            {
                lastError = ex; // the databases or the table may not exist yet: the silo creates them
            }
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"silo process {Name} not active within {timeout.TotalSeconds:0} s (last error: {lastError?.Message}):{Environment.NewLine}{Output}");
            await Task.Delay(200);
        }
    }

    private async Task<bool> IsActiveAsync()
    {
        await using var connection = new NpgsqlConnection(Cluster.Databases.Coordinator);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FROM orleansmembershiptable WHERE deploymentid = @cluster AND port = @port AND status = @active", connection);
        command.Parameters.AddWithValue("cluster", Cluster.ClusterId);
        command.Parameters.AddWithValue("port", SiloPort);
        command.Parameters.AddWithValue("active", ActiveStatus);
        return (long)(await command.ExecuteScalarAsync())! > 0;
    }

    /// <summary>How many silos of the cluster the membership table lists as Active (a killed one stays listed until declared dead).</summary>
    public static async Task<int> ActiveSilosAsync(ProcessClusterSettings cluster)
    {
        await using var connection = new NpgsqlConnection(cluster.Databases.Coordinator);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FROM orleansmembershiptable WHERE deploymentid = @cluster AND status = @active", connection);
        command.Parameters.AddWithValue("cluster", cluster.ClusterId);
        command.Parameters.AddWithValue("active", ActiveStatus);
        return (int)(long)(await command.ExecuteScalarAsync())!;
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
            Keep($"[test] dispose: {ex.Message}");
        }
        finally
        {
            Running.TryRemove(Pid, out _);
            _process.Dispose();
        }
    }

    private void Keep(string? line)
    {
        if (line is null) return;
        _output.Enqueue(line);
        while (_output.Count > MaxKeptLines) _output.TryDequeue(out _);
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try { return ((IPEndPoint)listener.LocalEndpoint).Port; }
        finally { listener.Stop(); }
    }

    /// <summary>The dotnet host running this test (the SDK sets DOTNET_HOST_PATH), else "dotnet" from PATH.</summary>
    private static string DotnetHost()
    {
        var current = Environment.ProcessPath;
        if (current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet") return current;
        var fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(fromSdk) && File.Exists(fromSdk)) return fromSdk;
        return "dotnet";
    }
}
