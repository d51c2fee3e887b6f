using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace OrleansTwoPC.Silo.Demo;

/// <summary>
/// A silo of the cluster demo in its own OS process: this same executable run as
/// <c>dotnet OrleansTwoPC.Silo.dll serve --Key=Value ...</c>. Its console output is kept (last lines) for
/// diagnostics. <see cref="Kill"/> is SIGKILL: no shutdown code runs in the child.
/// </summary>
public sealed class ChildSilo : IAsyncDisposable
{
    /// <summary>Orleans membership status "Active" in <c>orleansmembershiptable.status</c>.</summary>
    public const int ActiveStatus = 3;

    public const int DefaultKeptLines = 200;

    // Children of this process, killed when it exits whatever happened (no orphaned silos after a crash of the parent).
    private static readonly ConcurrentDictionary<int, Process> Running = new();

    static ChildSilo()
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
    private readonly int _keptLines;
    private readonly ConcurrentQueue<string> _output = new();
    private readonly string _coordinatorDatabase;
    private readonly string _clusterId;

    private ChildSilo(string name, Process process, int siloPort, int gatewayPort, string coordinatorDatabase, string clusterId, int keptLines)
    {
        _keptLines = keptLines;
        Name = name;
        _process = process;
        SiloPort = siloPort;
        GatewayPort = gatewayPort;
        _coordinatorDatabase = coordinatorDatabase;
        _clusterId = clusterId;
    }

    public string Name { get; }
    public int SiloPort { get; }
    public int GatewayPort { get; }
    public int Pid { get; private set; }
    public bool HasExited => _process.HasExited;

    /// <summary>The exit code, once <see cref="HasExited"/>.</summary>
    public int ExitCode => _process.ExitCode;

    /// <summary>Waits until the process has exited (a silo that refused to start, or one that was stopped).</summary>
    public Task WaitForExitAsync(CancellationToken cancellationToken) => _process.WaitForExitAsync(cancellationToken);

    /// <param name="overrides">Settings added to or replacing the defaults below (e.g. <c>TwoPC:Roles</c>).</param>
    /// <param name="keptLines">How many of the child's last console lines to keep.</param>
    /// <param name="shippedDefaults">Leave membership, messaging and recovery settings at the product's defaults
    /// instead of the fast-recovery tuning below (what a user's deployment runs with).</param>
    /// <param name="networkNamespace">Run the process inside this Linux network namespace (<c>ip netns exec</c>,
    /// root only), e.g. to cut it off from its peers with firewall rules; null runs it in this one.</param>
    /// <param name="environment">Environment variables added to the child's (e.g. a preloaded libfaketime to move its clock).</param>
    public static ChildSilo Start(string name, string adminConnectionString, string prefix, string clusterId, string serviceId, string coordinatorDatabase,
        IReadOnlyDictionary<string, string>? overrides = null, int keptLines = DefaultKeptLines, bool shippedDefaults = false,
        string? networkNamespace = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var siloPort = FreePort();
        var gatewayPort = FreePort();
        var settings = new Dictionary<string, string>
        {
            ["ConnectionStrings:PostgresServer"] = adminConnectionString,
            ["TwoPC:DatabasePrefix"] = prefix,
            ["TwoPC:ClusterId"] = clusterId,
            ["TwoPC:ServiceId"] = serviceId,
            ["TwoPC:SiloPort"] = siloPort.ToString(),
            ["TwoPC:GatewayPort"] = gatewayPort.ToString(),
            ["TwoPC:AdvertisedIp"] = "127.0.0.1",
            ["TwoPC:Logging:ConsoleLevel"] = "Warning",
            ["TwoPC:Logging:JsonFile"] = "",
        };
        var fastRecovery = new Dictionary<string, string>
        {
            // Declare a dead silo within a few seconds.
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
        };
        if (!shippedDefaults)
            foreach (var (key, value) in fastRecovery) settings[key] = value;
        foreach (var (key, value) in overrides ?? new Dictionary<string, string>()) settings[key] = value;

        var start = new ProcessStartInfo(networkNamespace is null ? DotnetHost() : "ip")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        if (networkNamespace is not null)
        {
            // "ip netns exec" replaces itself with the command, so the process's PID is the silo's.
            foreach (var argument in new[] { "netns", "exec", networkNamespace, DotnetHost() }) start.ArgumentList.Add(argument);
        }
        start.ArgumentList.Add(typeof(ChildSilo).Assembly.Location);
        start.ArgumentList.Add("serve");
        foreach (var (key, value) in settings) start.ArgumentList.Add($"--{key}={value}");
        // Nothing from this environment may redirect the child to other databases or another cluster.
        foreach (var key in start.Environment.Keys.Where(k => k.StartsWith("ConnectionStrings__", StringComparison.OrdinalIgnoreCase) || k.StartsWith("TwoPC__", StringComparison.OrdinalIgnoreCase)).ToList())
            start.Environment.Remove(key);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;

        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var silo = new ChildSilo(name, process, siloPort, gatewayPort, coordinatorDatabase, clusterId, keptLines);
        process.OutputDataReceived += (_, e) => silo.Keep(e.Data);
        process.ErrorDataReceived += (_, e) => silo.Keep(e.Data is null ? null : "[stderr] " + e.Data);
        if (!process.Start()) throw new InvalidOperationException($"could not start silo process {name}");
        silo.Pid = process.Id;
        Running[process.Id] = process;
        silo.Note($"started pid {process.Id}: silo port {siloPort}, gateway port {gatewayPort}");
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return silo;
    }

    /// <summary>The child's last console lines.</summary>
    public IReadOnlyList<string> LastLines(int count) => _output.TakeLast(count).ToList();

    /// <summary>Adds a line of the parent's own to the kept output (what happened to the child, and when).</summary>
    public void Note(string line) => Keep($"[parent {DateTime.UtcNow:HH:mm:ss.fff}] {line}");

    /// <summary>SIGKILL: the process dies at once, without any shutdown.</summary>
    public void Kill()
    {
        if (_process.HasExited) return;
        Note("SIGKILL");
        _process.Kill(entireProcessTree: true);
    }

    /// <summary>Waits until this silo is Active in the cluster's membership table.</summary>
    public async Task WaitActiveAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + timeout;
        Exception? lastError = null;
        while (true)
        {
            if (_process.HasExited)
                throw new InvalidOperationException($"silo process {Name} (pid {Pid}) exited with code {_process.ExitCode} before becoming active");
            try
            {
                if (await IsActiveAsync(cancellationToken)) return;
            }
            catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
            {
                lastError = ex; // the membership table may not exist yet
            }
            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"silo process {Name} (pid {Pid}) not active within {timeout.TotalSeconds:0} s (last error: {lastError?.Message})");
            await Task.Delay(200, cancellationToken);
        }
    }

    private async Task<bool> IsActiveAsync(CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(_coordinatorDatabase);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FROM orleansmembershiptable WHERE deploymentid = @cluster AND port = @port AND status = @active", connection);
        command.Parameters.AddWithValue("cluster", _clusterId);
        command.Parameters.AddWithValue("port", SiloPort);
        command.Parameters.AddWithValue("active", ActiveStatus);
        return (long)(await command.ExecuteScalarAsync(cancellationToken))! > 0;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited) _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch
        {
            // best effort: the process is gone or going
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
        while (_output.Count > _keptLines) _output.TryDequeue(out _);
    }

    public static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try { return ((IPEndPoint)listener.LocalEndpoint).Port; }
        finally { listener.Stop(); }
    }

    /// <summary>The dotnet host running this process if it is one, else DOTNET_HOST_PATH, else "dotnet" from PATH.</summary>
    private static string DotnetHost()
    {
        var current = Environment.ProcessPath;
        if (current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet") return current;
        var fromSdk = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(fromSdk) && File.Exists(fromSdk)) return fromSdk;
        return "dotnet";
    }
}
