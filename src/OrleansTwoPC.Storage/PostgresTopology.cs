using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace OrleansTwoPC.Storage;

/// <summary>
/// Resolves which PostgreSQL databases the system uses, creates them if missing and applies
/// the schema. Resolution order:
/// <list type="number">
/// <item><c>ConnectionStrings:Inventory|Payments|Shipping|Coordinator</c>: all four, used as given.</item>
/// <item><c>ConnectionStrings:PostgresServer</c>: an admin connection; the four databases are
/// <c>{prefix}_inventory</c>, <c>{prefix}_payments</c>, <c>{prefix}_shipping</c>, <c>{prefix}_coordinator</c>
/// with the prefix from <c>TwoPC:DatabasePrefix</c> (default <c>twopc</c>).</item>
/// <item>Otherwise an <see cref="EmbeddedPostgres"/> is started (settings under
/// <c>TwoPC:EmbeddedPostgres</c>: DataDirectory, Port, BinDirectory, MaxConnections) and the four
/// databases are derived on it as above.</item>
/// </list>
/// Environment variables map as usual, e.g. <c>ConnectionStrings__PostgresServer</c>.
/// </summary>
public static class PostgresTopology
{
    public const string PostgresServerName = "PostgresServer";
    public const string DatabasePrefixKey = "TwoPC:DatabasePrefix";
    public const string EmbeddedSectionKey = "TwoPC:EmbeddedPostgres";
    public const string DefaultDatabasePrefix = "twopc";

    /// <summary>Resolves, provisions and returns the databases (see the class summary).</summary>
    public static Task<PostgresRuntime> StartAsync(
        IConfiguration configuration, ILogger logger, CancellationToken cancellationToken = default) =>
        StartAsync(configuration, logger, ServiceDatabases.Names, cancellationToken);

    /// <summary>
    /// As above, for a process that needs only <paramref name="requiredDatabases"/> (names of
    /// <see cref="ServiceDatabases.Names"/>): given explicit connection strings, the others may be left out
    /// (they are empty in the result, see <see cref="ServiceDatabases.Has"/>), so a silo can run with the
    /// credentials of its own services only. <c>TwoPC:ProvisionDatabases=false</c> creates nothing: the
    /// databases and schema must exist (see <see cref="ServiceLogins"/>), which is what a login without
    /// CREATE rights needs. <c>TwoPC:Postgres:SslMode</c>/<c>RootCertificate</c> apply to every connection
    /// (see <see cref="PostgresTls"/>) except an embedded server's.
    /// </summary>
    public static async Task<PostgresRuntime> StartAsync(
        IConfiguration configuration, ILogger logger, IReadOnlyCollection<string> requiredDatabases, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentNullException.ThrowIfNull(logger);
        ArgumentNullException.ThrowIfNull(requiredDatabases);

        var tls = PostgresTls.FromConfiguration(configuration);
        var provision = ReadProvision(configuration);
        var commitDelay = GroupCommitSettings.ReadCommitDelay(configuration);
        var explicitDatabases = ReadExplicitDatabases(configuration, requiredDatabases);
        if (explicitDatabases is not null)
        {
            explicitDatabases = tls.Apply(explicitDatabases);
            logger.LogInformation("Using the configured service databases: {Databases}", explicitDatabases);
            if (!provision)
            {
                await Task.WhenAll(explicitDatabases.All.Where(x => x.Value.Length > 0)
                    .Select(x => SchemaApplier.RequireAppliedAsync(x.Value, cancellationToken))).ConfigureAwait(false);
                return new PostgresRuntime(explicitDatabases, PostgresSource.ConnectionStrings, null, null);
            }

            foreach (var (_, connectionString) in explicitDatabases.All.Where(x => x.Value.Length > 0))
            {
                await DatabaseProvisioner.EnsureDatabaseForAsync(connectionString, cancellationToken: cancellationToken).ConfigureAwait(false);
            }

            await ApplySchemaAsync(explicitDatabases, cancellationToken).ConfigureAwait(false);
            await ApplyGroupCommitAsync(explicitDatabases, commitDelay, logger, cancellationToken).ConfigureAwait(false);
            return new PostgresRuntime(explicitDatabases, PostgresSource.ConnectionStrings, null, null);
        }

        var prefix = ReadPrefix(configuration);
        var server = configuration.GetConnectionString(PostgresServerName);
        if (!string.IsNullOrWhiteSpace(server))
        {
            server = tls.Apply(server);
            if (!provision)
            {
                var existing = DeriveDatabases(server, prefix);
                await Task.WhenAll(existing.All.Select(x => SchemaApplier.RequireAppliedAsync(x.Value, cancellationToken))).ConfigureAwait(false);
                return new PostgresRuntime(existing, PostgresSource.Server, server, null);
            }

            logger.LogInformation("Using PostgreSQL server {Server} with database prefix {Prefix}",
                PostgresConnectionStrings.Redact(server), prefix);
            var databases = await ProvisionOnServerAsync(server, prefix, commitDelay, logger, cancellationToken).ConfigureAwait(false);
            return new PostgresRuntime(databases, PostgresSource.Server, server, null);
        }

        logger.LogInformation("No PostgreSQL configured (ConnectionStrings:{Name}); starting an embedded server", PostgresServerName);
        var embedded = await EmbeddedPostgres.StartNewAsync(ReadEmbeddedOptions(configuration), logger, cancellationToken)
            .ConfigureAwait(false);
        try
        {
            var databases = await ProvisionOnServerAsync(embedded.AdminConnectionString, prefix, commitDelay, logger, cancellationToken).ConfigureAwait(false);
            return new PostgresRuntime(databases, PostgresSource.Embedded, embedded.AdminConnectionString, embedded);
        }
        catch
        {
            await embedded.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>The four database connection strings derived from an admin connection and a prefix.</summary>
    public static ServiceDatabases DeriveDatabases(string adminConnectionString, string prefix = DefaultDatabasePrefix)
    {
        string For(string service)
        {
            var name = $"{prefix}_{service}";
            if (!DatabaseProvisioner.IsValidName(name))
            {
                throw new ArgumentException(
                    $"Database prefix '{prefix}' gives the invalid database name '{name}'. Use lower-case letters, digits and _.",
                    nameof(prefix));
            }

            return PostgresConnectionStrings.WithDefaultPool(PostgresConnectionStrings.WithDatabase(adminConnectionString, name));
        }

        return new ServiceDatabases(For("inventory"), For("payments"), For("shipping"), For("coordinator"));
    }

    /// <summary>
    /// Derives the four databases on a server, creates the missing ones, applies the schema and the default group
    /// commit settings (<see cref="GroupCommitSettings"/>).
    /// </summary>
    public static Task<ServiceDatabases> ProvisionOnServerAsync(
        string adminConnectionString, string prefix = DefaultDatabasePrefix, CancellationToken cancellationToken = default) =>
        ProvisionOnServerAsync(adminConnectionString, prefix, GroupCommitSettings.DefaultCommitDelayMicroseconds, NullLogger.Instance, cancellationToken);

    /// <summary>As above, with <paramref name="commitDelayMicroseconds"/> of group commit (0 leaves the databases' setting).</summary>
    public static async Task<ServiceDatabases> ProvisionOnServerAsync(
        string adminConnectionString, string prefix, int commitDelayMicroseconds, ILogger logger, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(logger);
        var databases = DeriveDatabases(adminConnectionString, prefix);
        foreach (var (_, connectionString) in databases.All)
        {
            await DatabaseProvisioner.EnsureDatabaseAsync(
                adminConnectionString, PostgresConnectionStrings.DatabaseOf(connectionString), cancellationToken).ConfigureAwait(false);
        }

        await ApplySchemaAsync(databases, cancellationToken).ConfigureAwait(false);
        await ApplyGroupCommitAsync(databases, commitDelayMicroseconds, logger, cancellationToken).ConfigureAwait(false);
        return databases;
    }

    private static async Task ApplyGroupCommitAsync(ServiceDatabases databases, int commitDelayMicroseconds, ILogger logger, CancellationToken cancellationToken)
    {
        foreach (var (name, connectionString) in databases.All.Where(x => x.Value.Length > 0))
        {
            if (!await GroupCommitSettings.ApplyAsync(connectionString, commitDelayMicroseconds, cancellationToken).ConfigureAwait(false))
                logger.LogWarning(
                    "The {Service} database was provisioned without commit_delay (the login may not set it): its commits share fewer WAL flushes. " +
                    "Set it as a superuser (ALTER DATABASE ... SET commit_delay = {Delay}, commit_siblings = 1) or set {Key}=0 to silence this",
                    name, commitDelayMicroseconds, GroupCommitSettings.CommitDelayKey);
        }
    }

    /// <summary>Applies the schema to the databases given (in parallel: advisory locks are per database).</summary>
    public static Task ApplySchemaAsync(ServiceDatabases databases, CancellationToken cancellationToken = default) =>
        Task.WhenAll(databases.All.Where(x => x.Value.Length > 0).Select(x => SchemaApplier.ApplyAsync(x.Value, cancellationToken)));

    private static ServiceDatabases? ReadExplicitDatabases(IConfiguration configuration, IReadOnlyCollection<string> required)
    {
        var values = ServiceDatabases.Names
            .Select(name => (name, value: configuration.GetConnectionString(name)))
            .ToList();
        var given = values.Where(x => !string.IsNullOrWhiteSpace(x.value)).ToList();
        if (given.Count == 0)
        {
            return null;
        }

        var missing = values.Where(x => string.IsNullOrWhiteSpace(x.value) && required.Contains(x.name, StringComparer.OrdinalIgnoreCase))
            .Select(x => $"ConnectionStrings:{x.name}").ToList();
        if (missing.Count > 0)
        {
            throw new PostgresSettingsException(
                (required.Count == values.Count
                    ? "Service connection strings must be given all together or not at all. Given: "
                    : $"This silo needs the databases {string.Join(", ", required)} (its roles', and Coordinator for the cluster's membership and reminders). Given: ") +
                string.Join(", ", given.Select(x => $"ConnectionStrings:{x.name}")) +
                ". Missing: " + string.Join(", ", missing) +
                $". Alternatively set only ConnectionStrings:{PostgresServerName} to derive all four.");
        }

        // One not given (and not needed) stays empty: this process holds no credentials for it.
        string Pick(int i) => string.IsNullOrWhiteSpace(values[i].value) ? "" : PostgresConnectionStrings.WithDefaultPool(values[i].value!);
        return new ServiceDatabases(Pick(0), Pick(1), Pick(2), Pick(3));
    }

    /// <summary><c>TwoPC:ProvisionDatabases</c>: true (the default) creates missing databases and applies the schema.</summary>
    public const string ProvisionKey = "TwoPC:ProvisionDatabases";

    private static bool ReadProvision(IConfiguration configuration)
    {
        var text = configuration[ProvisionKey];
        if (string.IsNullOrWhiteSpace(text)) return true;
        return bool.TryParse(text.Trim(), out var value)
            ? value
            : throw new PostgresSettingsException($"{ProvisionKey} must be true or false, not '{text}'");
    }

    private static string ReadPrefix(IConfiguration configuration)
    {
        var prefix = configuration[DatabasePrefixKey];
        return string.IsNullOrWhiteSpace(prefix) ? DefaultDatabasePrefix : prefix.Trim();
    }

    private static EmbeddedPostgresOptions ReadEmbeddedOptions(IConfiguration configuration)
    {
        var section = configuration.GetSection(EmbeddedSectionKey);
        var options = new EmbeddedPostgresOptions
        {
            DataDirectory = NullIfEmpty(section["DataDirectory"]),
            BinDirectory = NullIfEmpty(section["BinDirectory"]),
        };
        if (int.TryParse(section["Port"], NumberStyles.Integer, CultureInfo.InvariantCulture, out var port))
        {
            options.Port = port;
        }

        if (int.TryParse(section["MaxConnections"], NumberStyles.Integer, CultureInfo.InvariantCulture, out var maxConnections))
        {
            options.MaxConnections = maxConnections;
        }

        return options;
    }

    private static string? NullIfEmpty(string? value) => string.IsNullOrWhiteSpace(value) ? null : value;
}
