using Npgsql;
using OrleansTwoPC.Silo.Demo;

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
/// The real silo executable (<c>dotnet OrleansTwoPC.Silo.dll serve</c>) in its own OS process, started by the
/// product's own launcher (<see cref="ChildSilo"/>, as the cluster demo uses it) and configured only through
/// <c>--Key=Value</c> arguments. <see cref="Kill"/> is SIGKILL: no shutdown code runs, sockets and database
/// connections just vanish.
/// </summary>
public sealed class SiloProcess : IAsyncDisposable
{
    /// <summary>The SIGKILL test counts the silo's log lines over a whole run: keep them all.</summary>
    private const int KeptLines = 2000;

    private readonly ChildSilo _silo;

    private SiloProcess(ChildSilo silo, ProcessClusterSettings cluster)
    {
        _silo = silo;
        Cluster = cluster;
    }

    public string Name => _silo.Name;
    public ProcessClusterSettings Cluster { get; }
    public int SiloPort => _silo.SiloPort;
    public int GatewayPort => _silo.GatewayPort;
    public int Pid => _silo.Pid;
    public bool HasExited => _silo.HasExited;
    public bool WasKilled { get; private set; }

    /// <summary>The silo's console output (stdout and stderr, last lines).</summary>
    public string Output => string.Join(Environment.NewLine, _silo.LastLines(KeptLines));

    /// <summary>Starts a silo process (fresh ports) and returns at once; see <see cref="WaitActiveAsync"/>.</summary>
    /// <param name="shippedDefaults">Run with the product's default settings instead of the fast-recovery tuning.</param>
    public static SiloProcess Start(string name, ProcessClusterSettings cluster, IReadOnlyDictionary<string, string>? extraSettings = null, bool shippedDefaults = false) =>
        new(ChildSilo.Start(name, cluster.AdminConnectionString, cluster.DatabasePrefix, cluster.ClusterId, ProcessClusterSettings.ServiceId,
            cluster.Databases.Coordinator, extraSettings, KeptLines, shippedDefaults), cluster);

    /// <summary>SIGKILL (Process.Kill on Linux): the process dies at once, without any shutdown.</summary>
    public void Kill()
    {
        if (_silo.HasExited) return;
        WasKilled = true;
        _silo.Kill();
    }

    /// <summary>SIGTERM, as an operator's stop: the silo leaves the cluster gracefully. Killed if it has not exited in time.</summary>
    public async Task StopGracefullyAsync(TimeSpan timeout)
    {
        if (_silo.HasExited) return;
        await ProcessSignals.SendAsync(Pid, "TERM");
        for (var waited = System.Diagnostics.Stopwatch.StartNew(); !_silo.HasExited && waited.Elapsed < timeout;) await Task.Delay(100);
        if (!_silo.HasExited) Kill();
    }

    /// <summary>Waits until this silo is Active in the cluster's membership table (polled in PostgreSQL).</summary>
    public async Task WaitActiveAsync(TimeSpan timeout)
    {
        try
        {
            await _silo.WaitActiveAsync(timeout, CancellationToken.None);
        }
        catch (Exception ex) when (ex is TimeoutException or InvalidOperationException)
        {
            throw new InvalidOperationException($"{ex.Message}:{Environment.NewLine}{Output}", ex);
        }
    }

    /// <summary>How many silos of the cluster the membership table lists as Active (a killed one stays listed until declared dead).</summary>
    public static async Task<int> ActiveSilosAsync(ProcessClusterSettings cluster)
    {
        await using var connection = new NpgsqlConnection(cluster.Databases.Coordinator);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FROM orleansmembershiptable WHERE deploymentid = @cluster AND status = @active", connection);
        command.Parameters.AddWithValue("cluster", cluster.ClusterId);
        command.Parameters.AddWithValue("active", ChildSilo.ActiveStatus);
        return (int)(long)(await command.ExecuteScalarAsync())!;
    }

    public ValueTask DisposeAsync() => _silo.DisposeAsync();
}
