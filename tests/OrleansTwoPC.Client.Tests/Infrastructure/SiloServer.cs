using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Client.Tests.Infrastructure;

/// <summary>
/// One real silo process (the product's own <see cref="ChildSilo"/> launcher, as the cluster demo uses it)
/// on a PostgreSQL server under its own database prefix and cluster id. Disposing kills it.
/// </summary>
public sealed class SiloServer : IAsyncDisposable
{
    private const string ServiceId = "OrleansTwoPC";
    private readonly ChildSilo _silo;

    private SiloServer(ChildSilo silo, string adminConnectionString, string prefix, string clusterId)
    {
        _silo = silo;
        AdminConnectionString = adminConnectionString;
        Prefix = prefix;
        ClusterId = clusterId;
    }

    public string AdminConnectionString { get; }
    public string Prefix { get; }
    public string ClusterId { get; }
    public int SiloPort => _silo.SiloPort;
    public int GatewayPort => _silo.GatewayPort;
    public int Pid => _silo.Pid;

    /// <summary>The tpc arguments that reach this silo's databases and cluster.</summary>
    public string[] TpcSettings =>
    [
        $"--ConnectionStrings:PostgresServer={AdminConnectionString}",
        $"--TwoPC:DatabasePrefix={Prefix}",
        $"--TwoPC:ClusterId={ClusterId}",
    ];

    /// <summary>The last lines the silo printed (stdout and stderr), for failure messages.</summary>
    public string Output => string.Join(Environment.NewLine, _silo.LastLines(200));

    /// <summary>
    /// Starts a silo and waits until it is Active in membership: with a unique prefix and cluster id, or
    /// joining <paramref name="joining"/>'s cluster and databases. <paramref name="overrides"/> are extra
    /// silo settings (e.g. <c>TwoPC:Roles</c>).
    /// </summary>
    public static async Task<SiloServer> StartAsync(string adminConnectionString, string name, TimeSpan timeout,
        IReadOnlyDictionary<string, string>? overrides = null, SiloServer? joining = null)
    {
        var unique = $"{name}_{Guid.NewGuid():N}"[..(name.Length + 13)].ToLowerInvariant();
        var prefix = joining?.Prefix ?? $"c_{unique}";
        var clusterId = joining?.ClusterId ?? $"client-{unique}";
        var coordinator = PostgresTopology.DeriveDatabases(adminConnectionString, prefix).Coordinator;
        var silo = new SiloServer(ChildSilo.Start(name, adminConnectionString, prefix, clusterId, ServiceId, coordinator, overrides),
            adminConnectionString, prefix, clusterId);
        try
        {
            await silo._silo.WaitActiveAsync(timeout, CancellationToken.None);
            return silo;
        }
        catch
        {
            await silo.DisposeAsync();
            throw;
        }
    }

    /// <summary>SIGKILL: the silo process dies at once, as in a machine crash.</summary>
    public void Kill() => _silo.Kill();

    public bool HasExited => _silo.HasExited;

    public ValueTask DisposeAsync() => _silo.DisposeAsync();
}
