using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Grains.Recovery;
using OrleansTwoPC.Silo.Hosting;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Cluster.Tests.Infrastructure;

/// <summary>
/// A two-silo in-process Orleans test cluster whose grain storage and reminders live in real PostgreSQL
/// databases (one per service), configured exactly like the product's silo host.
/// </summary>
public class TwoPcClusterFixture : IAsyncLifetime
{
    public static readonly TimeSpan PrepareTimeout = TimeSpan.FromSeconds(2);

    protected virtual int SiloCount => 2;

    /// <summary>Real ADO.NET membership on PostgreSQL instead of the test cluster's own, so any silo may die.</summary>
    protected virtual bool UseAdoNetMembership => false;

    /// <summary>How long a prepared participant waits before it asks its coordinator (and the sweep settles it).</summary>
    protected virtual TimeSpan InDoubtTimeout => TimeSpan.FromSeconds(4);

    protected virtual string Name => "cluster";

    public TestCluster Cluster { get; private set; } = null!;
    public ServiceDatabases Databases { get; private set; } = null!;
    public IGrainFactory Grains => Cluster.GrainFactory;

    /// <summary>Calls made from code on a silo, i.e. from inside the cluster: participants accept prepare and
    /// phase two only from there (tests acting as a coordinator use it), never from the external test client.</summary>
    public IGrainFactory InsideCluster => Cluster.Silos.OfType<InProcessSiloHandle>().First().SiloHost.Services.GetRequiredService<IGrainFactory>();

    public async Task InitializeAsync()
    {
        Databases = await ProvisionDatabasesAsync();
        var builder = new TestClusterBuilder((short)SiloCount);
        foreach (var (name, connectionString) in Databases.All)
            builder.Properties[$"ConnectionStrings:{name}"] = connectionString;
        builder.Properties["TwoPC:Protocol:PrepareTimeout"] = PrepareTimeout.ToString();
        builder.Properties["TwoPC:Protocol:RetryBaseDelay"] = "00:00:00.050";
        builder.Properties["TwoPC:Protocol:RetryMaxDelay"] = "00:00:01";
        builder.Properties["TwoPC:Recovery:SweepInterval"] = "00:00:02";
        builder.Properties["TwoPC:Recovery:CoordinatorGrace"] = "00:00:02";
        builder.Properties["TwoPC:Protocol:InDoubtTimeout"] = InDoubtTimeout.ToString();
        if (UseAdoNetMembership)
        {
            builder.Options.UseTestClusterMembership = false;
            builder.Properties["TwoPC:AdoNetMembership"] = "true";
            // Detect a dead silo in a few seconds, as Orleans' own tests do.
            builder.Properties["Orleans:Membership:ProbeTimeout"] = "00:00:01";
            builder.Properties["Orleans:Membership:NumMissedProbesLimit"] = "1";
            builder.Properties["Orleans:Membership:NumVotesForDeathDeclaration"] = "1";
            builder.Properties["Orleans:Membership:TableRefreshTimeout"] = "00:00:02";
            builder.Properties["Orleans:Membership:DeathVoteExpirationTimeout"] = "00:00:10";
            builder.Properties["Orleans:Membership:IAmAliveTablePublishTimeout"] = "00:00:05";
            builder.Properties["Orleans:Messaging:ResponseTimeout"] = "00:00:10";
            builder.AddClientBuilderConfigurator<ClientConfigurator>();
        }
        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        Configure(builder);
        Cluster = builder.Build();
        await Cluster.DeployAsync();
        if (AwaitStartSweeps)
            foreach (var silo in Cluster.Silos.OfType<InProcessSiloHandle>())
                await silo.SiloHost.Services.GetRequiredService<SiloDeathRecovery>().StartSweepsCompleted.WaitAsync(TimeSpan.FromMinutes(2));
    }

    /// <summary>
    /// Start tests only once every silo's start sweeps are over: those settle every prepared participant
    /// whatever its age, so they would abort a test's own prepare that no coordinator knows.
    /// </summary>
    protected virtual bool AwaitStartSweeps => false;

    /// <summary>More settings for a fixture's silos (e.g. another storage provider).</summary>
    protected virtual void Configure(TestClusterBuilder builder)
    {
    }

    /// <summary>Fresh service databases; by default on the run's shared server.</summary>
    protected virtual Task<ServiceDatabases> ProvisionDatabasesAsync() => SharedPostgres.FreshDatabasesAsync(Name);

    public virtual async Task DisposeAsync()
    {
        await Cluster.StopAllSilosAsync();
        await Cluster.DisposeAsync();
        // Npgsql keeps idle pooled connections per connection string after the silos are gone; every fixture
        // has its own databases, so without this the run's fixtures add up to the server's max_connections.
        Npgsql.NpgsqlConnection.ClearAllPools();
    }

    /// <summary>Registers a participant fault on every silo (the participant may be activated on any of them).</summary>
    public void InjectFault(string participant, string transactionId, ParticipantFault fault, TimeSpan hangFor = default)
    {
        foreach (var injector in FaultInjectors()) injector.Inject(participant, transactionId, fault, hangFor);
    }

    public void RemoveFault(string participant, string transactionId)
    {
        foreach (var injector in FaultInjectors()) injector.Remove(participant, transactionId);
    }

    public IEnumerable<FaultInjector> FaultInjectors() => Cluster.Silos
        .OfType<InProcessSiloHandle>()
        .Select(s => s.SiloHost.Services.GetRequiredService<FaultInjector>());

    public IEnumerable<(SiloHandle Silo, CrashInjector Crashes)> CrashInjectors() => Cluster.Silos
        .OfType<InProcessSiloHandle>()
        .Select(s => ((SiloHandle)s, s.SiloHost.Services.GetRequiredService<CrashInjector>()));

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
            if (configuration["TwoPC:AdoNetMembership"] == "true")
                siloBuilder.UseAdoNetClustering(o =>
                {
                    o.Invariant = TwoPhaseCommitSiloExtensions.AdoNetInvariant;
                    o.ConnectionString = databases.Coordinator;
                });
            siloBuilder.AddTwoPhaseCommit(databases, configuration);
        }
    }

    private sealed class ClientConfigurator : IClientBuilderConfigurator
    {
        public void Configure(IConfiguration configuration, IClientBuilder clientBuilder) =>
            clientBuilder
                .UseAdoNetClustering(o =>
                {
                    o.Invariant = TwoPhaseCommitSiloExtensions.AdoNetInvariant;
                    o.ConnectionString = configuration.GetConnectionString("Coordinator");
                })
                // Learn quickly that a killed silo's gateway is gone.
                .Configure<Orleans.Configuration.GatewayOptions>(o => o.GatewayListRefreshPeriod = TimeSpan.FromSeconds(1));
    }
}

[CollectionDefinition(Name)]
public sealed class ClusterCollection : ICollectionFixture<TwoPcClusterFixture>
{
    public const string Name = "two-silo cluster on PostgreSQL";
}
