using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using OrleansTwoPC.Grains;
using OrleansTwoPC.Grains.Errors;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Protocol;
using Orleans.Configuration;
using Orleans.Storage;
using OrleansTwoPC.Grains.Placement;
using OrleansTwoPC.Grains.Recovery;
using Orleans.Placement;
using Orleans.Runtime.MembershipService.SiloMetadata;
using OrleansTwoPC.Grains.Telemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Batching;
using OrleansTwoPC.Storage.Records;
using Orleans.Runtime.Hosting;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>Everything a silo needs to host the transaction manager, shared by the host and the test clusters.</summary>
public static class TwoPhaseCommitSiloExtensions
{
    /// <summary>Grain addresses each silo caches (<c>TwoPC:DirectoryCacheSize</c> overrides it; 0 caches none); Orleans' default is 1,000,000.</summary>
    public const int DefaultDirectoryCacheSize = 100_000;

    public const string DirectoryCacheSizeKey = "TwoPC:DirectoryCacheSize";

    private static int DirectoryCacheSize(IConfiguration configuration)
    {
        var text = configuration[DirectoryCacheSizeKey];
        if (string.IsNullOrWhiteSpace(text)) return DefaultDirectoryCacheSize;
        return int.TryParse(text.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var size)
            ? size
            : throw new SiloStartupException($"{DirectoryCacheSizeKey} must be a whole number from 0 to {int.MaxValue}, not '{text}'");
    }

    public const string AdoNetInvariant = "Npgsql";
    public const string ProtocolSection = "TwoPC:Protocol";
    public const string RecoverySection = "TwoPC:Recovery";
    public const string TelemetrySection = "TwoPC:Telemetry";
    public const string StorageProviderKey = "TwoPC:Storage:Provider";

    /// <summary>Orleans' own activity sources (grain calls), exported together with ours so traces are complete.</summary>
    public static readonly string[] OrleansActivitySources = ["Microsoft.Orleans.Runtime", "Microsoft.Orleans.Application"];

    /// <summary>
    /// Registers one grain storage provider per service, each on its own database, reminders on the
    /// coordinator's database, the protocol options and the (inert) fault injector.
    /// </summary>
    public static ISiloBuilder AddTwoPhaseCommit(this ISiloBuilder silo, ServiceDatabases databases, IConfiguration configuration)
    {
        // Least privilege: grain storage and direct reads only for this silo's own services' databases (see
        // ServiceLogins); the coordinator database's cluster tables (reminders, membership) serve every silo.
        var roles = ServiceRoles.Normalize(configuration[ServiceRoles.ConfigurationKey]);
        var provider = StorageProvider(configuration);
        var own = databases.Only(ServiceLogins.DatabasesFor(ServiceRoles.Every.Where(r => ServiceRoles.Hosts(roles, r)))
            .Where(name => name != "Coordinator" || ServiceRoles.Hosts(roles, ServiceRoles.Coordinator)).ToList());
        foreach (var (role, storage, database) in new[]
                 {
                     (ServiceRoles.Inventory, StorageNames.Inventory, "Inventory"), (ServiceRoles.Payment, StorageNames.Payments, "Payments"),
                     (ServiceRoles.Shipping, StorageNames.Shipping, "Shipping"), (ServiceRoles.Coordinator, StorageNames.Coordinator, "Coordinator"),
                 })
        {
            if (!ServiceRoles.Hosts(roles, role)) continue;
            if (!own.Has(database))
                throw new SiloStartupException($"this silo hosts the {role} service but has no connection string for its database (ConnectionStrings:{database})");
            AddStorage(silo, storage, own[database], provider);
        }

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
        // Every order activates two grains of its own (coordinator, shipment), and each caller caches their address:
        // with Orleans' default of a million entries the cache grew the heap by about 230 MB over minutes of load.
        var directoryCacheSize = DirectoryCacheSize(configuration);
        silo.Services.Configure<GrainDirectoryOptions>(o => o.CacheSize = directoryCacheSize);

        // Service roles: every silo publishes its roles as silo metadata; participant and coordinator grains
        // carry a placement filter that keeps them on silos of their role.
        silo.UseSiloMetadata(new Dictionary<string, string> { [ServiceRoles.MetadataKey] = roles });
        silo.Services.AddSingleton(new LocalSiloRoles(roles));
        silo.Services.AddSingleton<SiloRoleLookup>();
        // Transient: Orleans initialises one strategy instance per grain type with that type's role.
        silo.Services.AddPlacementFilter<ServiceRolePlacementFilterStrategy, ServiceRolePlacementFilterDirector>(ServiceLifetime.Transient);

        // Every silo that hosts the transaction manager, test clusters and the benchmark's included.
        silo.UseWatchdogClockFromFirstReading();
        silo.Services.TryAddSingleton(TimeProvider.System);
        silo.Services.AddSingleton<FaultInjector>();
        silo.Services.AddSingleton<StepFaultInjector>();
        // Prepare and phase two only from inside the cluster, never from an external client.
        silo.AddIncomingGrainCallFilter<OrleansTwoPC.Grains.Participants.ClusterOnlyCallFilter>();
        silo.Services.AddSingleton(_ => new OrleansTwoPC.Grains.Coordinator.ExistingResourceCache());
        silo.Services.AddSingleton<CrashInjector>();
        silo.Services.AddSingleton(databases);
        silo.Services.AddSingleton(sp => new StoredStateReader(own));
        silo.Services.AddSingleton<IRecoveryCatalog, PostgresRecoveryCatalog>();
        silo.Services.AddSingleton<RecoverySweeper>();
        silo.AddStartupTask<RecoveryAgentStartup>();
        silo.AddStartupTask<LegacyKeyRowsWarning>();
        // React to a silo's death at once rather than only on the periodic sweep.
        silo.Services.AddSingleton<SiloDeathRecovery>();
        silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<SiloDeathRecovery>());

        // Trace context flows across grain calls (coordinator -> participants). Clients that want their
        // calls in the same trace call clientBuilder.AddActivityPropagation() too.
        silo.AddActivityPropagation();
        // Clients get errors they can deserialize: a TwoPcException with a code and one line.
        silo.AddIncomingGrainCallFilter<ClientErrorFilter>();
        AddTelemetryExporters(silo.Services, configuration);
        return silo;
    }

    /// <summary>
    /// Exporters are off by default: the meter and activity source always exist (and cost nothing without
    /// listeners); <c>TwoPC:Telemetry:Exporter</c> = console or otlp (with <c>TwoPC:Telemetry:OtlpEndpoint</c>)
    /// registers an OpenTelemetry SDK pipeline for metrics and traces.
    /// </summary>
    public static void AddTelemetryExporters(IServiceCollection services, IConfiguration configuration)
    {
        var section = configuration.GetSection(TelemetrySection);
        var exporter = (section["Exporter"] ?? "none").Trim().ToLowerInvariant();
        var endpoint = section["OtlpEndpoint"];
        switch (exporter)
        {
            case "" or "none":
                return;
            case "console" or "otlp":
                break;
            default:
                throw new InvalidOperationException($"{TelemetrySection}:Exporter must be none, console or otlp, not '{section["Exporter"]}'");
        }
        Uri? otlpEndpoint = null;
        if (exporter == "otlp" && !string.IsNullOrWhiteSpace(endpoint) && !Uri.TryCreate(endpoint, UriKind.Absolute, out otlpEndpoint))
            throw new InvalidOperationException($"{TelemetrySection}:OtlpEndpoint is not an absolute URI: '{endpoint}'");

        services.AddOpenTelemetry()
            .ConfigureResource(r => r.AddService("OrleansTwoPC.Silo"))
            .WithMetrics(m =>
            {
                m.AddMeter(TwoPcTelemetry.MeterName);
                if (exporter == "console") m.AddConsoleExporter();
                else m.AddOtlpExporter(o => { if (otlpEndpoint is not null) o.Endpoint = otlpEndpoint; });
            })
            .WithTracing(t =>
            {
                t.AddSource(TwoPcTelemetry.ActivitySourceName);
                t.AddSource(OrleansActivitySources);
                if (exporter == "console") t.AddConsoleExporter();
                else t.AddOtlpExporter(o => { if (otlpEndpoint is not null) o.Endpoint = otlpEndpoint; });
            });
    }

    /// <summary><c>TwoPC:Storage:Provider</c>: batched (default, <see cref="BatchedGrainStorage"/>) or adonet (Orleans' ADO.NET provider).</summary>
    public static string StorageProvider(IConfiguration configuration) =>
        (configuration[StorageProviderKey] ?? "").Trim().ToLowerInvariant() switch
        {
            "adonet" => "adonet",
            "" or BatchedGrainStorage.ProviderName => BatchedGrainStorage.ProviderName,
            _ => throw new SiloStartupException($"{StorageProviderKey} must be adonet or batched, not '{configuration[StorageProviderKey]}'"),
        };

    private static void AddStorage(ISiloBuilder silo, string name, string connectionString, string provider)
    {
        if (provider == BatchedGrainStorage.ProviderName)
        {
            // Keys are stored as full strings, so no DistinctKeyGrainStorage; the writer belongs to this storage.
            silo.Services.AddGrainStorage(name, (sp, _) => new ClearErrorGrainStorage(name, new BatchedGrainStorage(
                name, new BatchedStateWriter(connectionString), new CompactJsonGrainStorageSerializer(),
                sp.GetRequiredService<Orleans.Serialization.Serializers.IActivatorProvider>())));
            return;
        }

        silo.AddAdoNetGrainStorage(name, o =>
        {
            o.Invariant = AdoNetInvariant;
            o.ConnectionString = PostgresConnectionStrings.WithoutSessionReset(connectionString);
            o.GrainStorageSerializer = new CompactJsonGrainStorageSerializer();
        });
        // The last keyed registration wins: the same ADO.NET provider, wrapped so that every string key gets a
        // row of its own and callers get clear errors.
        silo.Services.AddKeyedSingleton<IGrainStorage>(name, (sp, _) =>
            new ClearErrorGrainStorage(name, new DistinctKeyGrainStorage(AdoNetGrainStorageFactory.Create(sp, name))));
    }
}

/// <summary>
/// Warns once per start when the databases still hold rows written before ids were stored as exact strings:
/// no grain reads them any more (see docs/operations.md, "Ids and rows from older versions").
/// </summary>
internal sealed class LegacyKeyRowsWarning(StoredStateReader reader, ILogger<LegacyKeyRowsWarning> logger) : IStartupTask
{
    public async Task Execute(CancellationToken cancellationToken)
    {
        try
        {
            var legacy = await reader.LegacyNumericKeyRowsAsync(cancellationToken);
            if (legacy.Count > 0)
                logger.LogWarning("Rows stored under the old numeric key mapping are no longer read: {Rows}; see docs/operations.md (ids and rows from older versions)",
                    string.Join(", ", legacy.Select(l => $"{l.Rows} in {l.Service}")));
        }
        catch (Exception ex)
        {
            logger.LogWarning("Could not look for rows of the old key mapping: {Error}", ex.GetBaseException().Message);
        }
    }
}

/// <summary>
/// Makes sure the cluster's recovery reminder exists as soon as a coordinator silo is up. Silos of the
/// other roles skip it: the agent lives with the coordinators and may have no silo to run on yet.
/// </summary>
internal sealed class RecoveryAgentStartup(IGrainFactory grains, LocalSiloRoles roles) : IStartupTask
{
    public Task Execute(CancellationToken cancellationToken) =>
        ServiceRoles.Hosts(roles.Roles, ServiceRoles.Coordinator)
            ? grains.GetGrain<IRecoveryAgentGrain>(0).EnsureScheduled()
            : Task.CompletedTask;
}
