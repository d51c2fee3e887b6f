using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;

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
    public static async Task<PostgresRuntime> StartAsync(
        IConfiguration configuration, ILogger logger, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentNullException.ThrowIfNull(logger);

        var explicitDatabases = ReadExplicitDatabases(configuration);
        if (explicitDatabases is not null)
        {
            logger.LogInformation("Using the configured service databases: {Databases}", explicitDatabases);
            foreach (var (_, connectionString) in explicitDatabases.All)
            {
                await DatabaseProvisioner.EnsureDatabaseForAsync(connectionString, cancellationToken: cancellationToken).ConfigureAwait(false);
            }

            await ApplySchemaAsync(explicitDatabases, cancellationToken).ConfigureAwait(false);
            return new PostgresRuntime(explicitDatabases, PostgresSource.ConnectionStrings, null, null);
        }

        var prefix = ReadPrefix(configuration);
        var server = configuration.GetConnectionString(PostgresServerName);
        if (!string.IsNullOrWhiteSpace(server))
        {
            logger.LogInformation("Using PostgreSQL server {Server} with database prefix {Prefix}",
                PostgresConnectionStrings.Redact(server), prefix);
            var databases = await ProvisionOnServerAsync(server, prefix, cancellationToken).ConfigureAwait(false);
            return new PostgresRuntime(databases, PostgresSource.Server, server, null);
        }

        logger.LogInformation("No PostgreSQL configured (ConnectionStrings:{Name}); starting an embedded server", PostgresServerName);
        var embedded = await EmbeddedPostgres.StartNewAsync(ReadEmbeddedOptions(configuration), logger, cancellationToken)
            .ConfigureAwait(false);
        try
        {
            var databases = await ProvisionOnServerAsync(embedded.AdminConnectionString, prefix, cancellationToken).ConfigureAwait(false);
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

    /// <summary>Derives the four databases on a server, creates the missing ones and applies the schema.</summary>
    public static async Task<ServiceDatabases> ProvisionOnServerAsync(
        string adminConnectionString, string prefix = DefaultDatabasePrefix, CancellationToken cancellationToken = default)
    {
        var databases = DeriveDatabases(adminConnectionString, prefix);
        foreach (var (_, connectionString) in databases.All)
        {
            await DatabaseProvisioner.EnsureDatabaseAsync(
                adminConnectionString, PostgresConnectionStrings.DatabaseOf(connectionString), cancellationToken).ConfigureAwait(false);
        }

        await ApplySchemaAsync(databases, cancellationToken).ConfigureAwait(false);
        return databases;
    }

    /// <summary>Applies the schema to all four databases (in parallel: advisory locks are per database).</summary>
    public static Task ApplySchemaAsync(ServiceDatabases databases, CancellationToken cancellationToken = default) =>
        Task.WhenAll(databases.All.Select(x => SchemaApplier.ApplyAsync(x.Value, cancellationToken)));

    private static ServiceDatabases? ReadExplicitDatabases(IConfiguration configuration)
    {
        var values = ServiceDatabases.Names
            .Select(name => (name, value: configuration.GetConnectionString(name)))
            .ToList();
        var given = values.Where(x => !string.IsNullOrWhiteSpace(x.value)).ToList();
        if (given.Count == 0)
        {
            return null;
        }

        if (given.Count != values.Count)
        {
            var missing = values.Where(x => string.IsNullOrWhiteSpace(x.value)).Select(x => $"ConnectionStrings:{x.name}");
            throw new InvalidOperationException(
                "Service connection strings must be given all together or not at all. Given: " +
                string.Join(", ", given.Select(x => $"ConnectionStrings:{x.name}")) +
                ". Missing: " + string.Join(", ", missing) +
                $". Alternatively set only ConnectionStrings:{PostgresServerName} to derive all four.");
        }

        return new ServiceDatabases(
            PostgresConnectionStrings.WithDefaultPool(values[0].value!),
            PostgresConnectionStrings.WithDefaultPool(values[1].value!),
            PostgresConnectionStrings.WithDefaultPool(values[2].value!),
            PostgresConnectionStrings.WithDefaultPool(values[3].value!));
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
