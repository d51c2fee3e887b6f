using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Client.Tests.Infrastructure;

/// <summary>
/// A real silo process (<c>dotnet OrleansTwoPC.Silo.dll serve</c>) with the shipped defaults: it is told only
/// where its databases and cluster are, its ports and roles. No timeout, membership or recovery setting is
/// tuned (unlike <see cref="SiloServer"/>, which detects deaths fast).
/// </summary>
public sealed class DefaultSettingsSilo : IAsyncDisposable
{
    private const string ServiceId = "OrleansTwoPC";
    private const int KeptLines = 400;

    private readonly ChildSilo _silo;

    private DefaultSettingsSilo(ChildSilo silo) => _silo = silo;

    public string Name => _silo.Name;
    public int SiloPort => _silo.SiloPort;
    public bool HasExited => _silo.HasExited;

    public string Output => string.Join(Environment.NewLine, _silo.LastLines(KeptLines));

    public static DefaultSettingsSilo Start(string name, string adminConnectionString, string prefix, string clusterId, string roles) =>
        new(ChildSilo.Start(name, adminConnectionString, prefix, clusterId, ServiceId,
            PostgresTopology.DeriveDatabases(adminConnectionString, prefix).Coordinator,
            new Dictionary<string, string> { ["TwoPC:Roles"] = roles }, KeptLines, shippedDefaults: true));

    /// <summary>Waits until this silo is Active in the cluster's membership table.</summary>
    public Task WaitActiveAsync(TimeSpan timeout) => _silo.WaitActiveAsync(timeout, CancellationToken.None);

    /// <summary>SIGKILL: the process dies at once, without any shutdown.</summary>
    public void Kill() => _silo.Kill();

    public ValueTask DisposeAsync() => _silo.DisposeAsync();
}
