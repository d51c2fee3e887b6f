using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using OrleansTwoPC.Grains;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Protocol;
using Orleans.Configuration;
using Orleans.Storage;
using OrleansTwoPC.Grains.Recovery;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>Everything a silo needs to host the transaction manager, shared by the host and the test clusters.</summary>
public static class TwoPhaseCommitSiloExtensions
{
    public const string AdoNetInvariant = "Npgsql";
    public const string ProtocolSection = "TwoPC:Protocol";
    public const string RecoverySection = "TwoPC:Recovery";

    /// <summary>
    /// Registers one grain storage provider per service, each on its own database, reminders on the
    /// coordinator's database, the protocol options and the (inert) fault injector.
    /// </summary>
    public static ISiloBuilder AddTwoPhaseCommit(this ISiloBuilder silo, ServiceDatabases databases, IConfiguration configuration)
    {
        AddStorage(silo, StorageNames.Inventory, databases.Inventory);
        AddStorage(silo, StorageNames.Payments, databases.Payments);
        AddStorage(silo, StorageNames.Shipping, databases.Shipping);
        AddStorage(silo, StorageNames.Coordinator, databases.Coordinator);
        silo.UseAdoNetReminderService(o =>
        {
            o.Invariant = AdoNetInvariant;
            o.ConnectionString = databases.Coordinator;
        });

        silo.Services.AddOptions<ProtocolOptions>()
            .Bind(configuration.GetSection(ProtocolSection))
            .Validate(o => { o.Validate(); return true; })
            .ValidateOnStart();
        silo.Services.AddOptions<RecoveryOptions>()
            .Bind(configuration.GetSection(RecoverySection))
            .Validate(o => { o.Validate(); return true; })
            .ValidateOnStart();
        // Orleans refuses reminder periods under a minute by default; the sweep may be configured faster.
        var sweep = configuration.GetSection(RecoverySection).Get<RecoveryOptions>()?.SweepInterval ?? new RecoveryOptions().SweepInterval;
        silo.Services.Configure<ReminderOptions>(o =>
        {
            if (sweep < o.MinimumReminderPeriod) o.MinimumReminderPeriod = sweep;
        });
        // Membership, messaging and collection can be tuned from configuration (tests detect dead silos fast).
        silo.Services.Configure<ClusterMembershipOptions>(configuration.GetSection("Orleans:Membership"));
        silo.Services.Configure<SiloMessagingOptions>(configuration.GetSection("Orleans:Messaging"));

        silo.Services.TryAddSingleton(TimeProvider.System);
        silo.Services.AddSingleton<FaultInjector>();
        silo.Services.AddSingleton<CrashInjector>();
        silo.Services.AddSingleton(databases);
        silo.Services.AddSingleton(sp => new StoredStateReader(databases));
        silo.Services.AddSingleton<IRecoveryCatalog, PostgresRecoveryCatalog>();
        silo.Services.AddSingleton<RecoverySweeper>();
        silo.AddStartupTask<RecoveryAgentStartup>();
        return silo;
    }

    private static void AddStorage(ISiloBuilder silo, string name, string connectionString)
    {
        silo.AddAdoNetGrainStorage(name, o =>
        {
            o.Invariant = AdoNetInvariant;
            o.ConnectionString = connectionString;
            o.GrainStorageSerializer = new CompactJsonGrainStorageSerializer();
        });
        // The last keyed registration wins: the same ADO.NET provider, wrapped so callers get clear errors.
        silo.Services.AddKeyedSingleton<IGrainStorage>(name, (sp, _) => new ClearErrorGrainStorage(name, AdoNetGrainStorageFactory.Create(sp, name)));
    }
}

/// <summary>Makes sure the cluster's recovery reminder exists as soon as a silo is up.</summary>
internal sealed class RecoveryAgentStartup(IGrainFactory grains) : IStartupTask
{
    public Task Execute(CancellationToken cancellationToken) => grains.GetGrain<IRecoveryAgentGrain>(0).EnsureScheduled();
}
