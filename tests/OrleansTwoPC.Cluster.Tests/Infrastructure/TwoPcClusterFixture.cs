using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Silo.Hosting;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Cluster.Tests.Infrastructure;

/// <summary>
/// A two-silo in-process Orleans test cluster whose grain storage and reminders live in real PostgreSQL
/// databases (one per service), configured exactly like the product's silo host.
/// </summary>
public class TwoPcClusterFixture : IAsyncLifetime
{
    public const int SiloCount = 2;
    public static readonly TimeSpan PrepareTimeout = TimeSpan.FromSeconds(2);

    public TestCluster Cluster { get; private set; } = null!;
    public ServiceDatabases Databases { get; private set; } = null!;
    public IGrainFactory Grains => Cluster.GrainFactory;

    public async Task InitializeAsync()
    {
        Databases = await SharedPostgres.FreshDatabasesAsync("cluster");
        var builder = new TestClusterBuilder(SiloCount);
        foreach (var (name, connectionString) in Databases.All)
            builder.Properties[$"ConnectionStrings:{name}"] = connectionString;
        builder.Properties["TwoPC:Protocol:PrepareTimeout"] = PrepareTimeout.ToString();
        builder.Properties["TwoPC:Protocol:RetryBaseDelay"] = "00:00:00.050";
        builder.Properties["TwoPC:Protocol:RetryMaxDelay"] = "00:00:01";
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        Cluster = builder.Build();
        await Cluster.DeployAsync();
    }

    public async Task DisposeAsync()
    {
        await Cluster.StopAllSilosAsync();
        await Cluster.DisposeAsync();
    }

    /// <summary>Registers a participant fault on every silo (the participant may be activated on any of them).</summary>
    public void InjectFault(string participant, string transactionId, ParticipantFault fault, TimeSpan hangFor = default)
    {
        foreach (var injector in FaultInjectors()) injector.Inject(participant, transactionId, fault, hangFor);
    }

    public IEnumerable<FaultInjector> FaultInjectors() => Cluster.Silos
        .OfType<InProcessSiloHandle>()
        .Select(s => s.SiloHost.Services.GetRequiredService<FaultInjector>());

    private sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
        {
            var configuration = siloBuilder.Configuration;
            var databases = new ServiceDatabases(
                configuration.GetConnectionString("Inventory")!,
                configuration.GetConnectionString("Payments")!,
                configuration.GetConnectionString("Shipping")!,
                configuration.GetConnectionString("Coordinator")!);
            siloBuilder.AddTwoPhaseCommit(databases, configuration);
        }
    }
}

[CollectionDefinition(Name)]
public sealed class ClusterCollection : ICollectionFixture<TwoPcClusterFixture>
{
    public const string Name = "two-silo cluster on PostgreSQL";
}
