using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using OrleansTwoPC.Grains;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>Everything a silo needs to host the transaction manager, shared by the host and the test clusters.</summary>
public static class TwoPhaseCommitSiloExtensions
{
    public const string AdoNetInvariant = "Npgsql";
    public const string ProtocolSection = "TwoPC:Protocol";

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
        silo.Services.TryAddSingleton(TimeProvider.System);
        silo.Services.AddSingleton<FaultInjector>();
        return silo;
    }

    private static void AddStorage(ISiloBuilder silo, string name, string connectionString) =>
        silo.AddAdoNetGrainStorage(name, o =>
        {
            o.Invariant = AdoNetInvariant;
            o.ConnectionString = connectionString;
            o.GrainStorageSerializer = new CompactJsonGrainStorageSerializer();
        });
}
