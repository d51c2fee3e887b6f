using System.Data.Common;
using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using OrleansTwoPC.Abstractions.Security;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Client;

/// <summary>
/// The client's configuration, read like the silo's: <c>appsettings.json</c> beside the executable, then the
/// user's profile (<see cref="ProfilePath"/>), then the environment (<c>ConnectionStrings__PostgresServer</c>,
/// <c>TwoPC__ClusterId</c>), then <c>--Section:Key=Value</c> arguments (anything of that shape is configuration, not a command option).
/// The client never starts an embedded PostgreSQL and never creates databases or applies the schema.
/// </summary>
public sealed class ClientSettings
{
    public const string ClusterIdKey = "TwoPC:ClusterId";
    public const string ServiceIdKey = "TwoPC:ServiceId";
    public const string ConnectTimeoutKey = "TwoPC:Client:ConnectTimeout";
    public const string ResponseTimeoutKey = "TwoPC:Client:ResponseTimeout";
    public const string LogLevelKey = "TwoPC:Client:LogLevel";
    public const string DefaultClusterId = "twopc";
    public const string DefaultServiceId = "OrleansTwoPC";

    /// <summary>Npgsql's own connect timeout when the connection string sets none (its default is 15 s).</summary>
    private const int DefaultDatabaseTimeoutSeconds = 5;

    private static readonly string[] TimeoutKeys = ["Timeout", "Connect Timeout", "Connection Timeout", "ConnectTimeout"];

    public ClientSettings(IConfiguration configuration) => Configuration = configuration;

    public IConfiguration Configuration { get; }

    public string ClusterId => NonBlank(Configuration[ClusterIdKey]) ?? DefaultClusterId;

    public string ServiceId => NonBlank(Configuration[ServiceIdKey]) ?? DefaultServiceId;

    public TimeSpan ConnectTimeout => ReadDuration(ConnectTimeoutKey, TimeSpan.FromSeconds(10));

    public TimeSpan ResponseTimeout => ReadDuration(ResponseTimeoutKey, TimeSpan.FromSeconds(30));

    /// <summary>Orleans and client logs go to stderr at this level (default: none, so output stays clean).</summary>
    public LogLevel LogLevel => Enum.TryParse<LogLevel>(Configuration[LogLevelKey], ignoreCase: true, out var level) ? level : LogLevel.None;

    /// <summary>True for an argument that is a configuration setting (<c>--Section:Key=Value</c>).</summary>
    public static bool IsConfigurationArgument(string argument)
    {
        if (!argument.StartsWith("--", StringComparison.Ordinal))
        {
            return false;
        }

        var equals = argument.IndexOf('=', StringComparison.Ordinal);
        return equals > 2 && argument.AsSpan(2, equals - 2).Contains(':');
    }

    /// <summary>Names the profile file instead of the default one.</summary>
    public const string ProfileVariable = "TPC_PROFILE";

    /// <summary>
    /// The user's profile: a JSON file like <c>appsettings.json</c> (e.g. <c>{"ConnectionStrings": {"PostgresServer": "..."}}</c>)
    /// so the connection is not repeated on every call: <c>$TPC_PROFILE</c>, else
    /// <c>$XDG_CONFIG_HOME/tpc/appsettings.json</c> (<c>~/.config/tpc/appsettings.json</c>). Optional.
    /// </summary>
    public static string? ProfilePath()
    {
        if (NonBlank(Environment.GetEnvironmentVariable(ProfileVariable)) is { } named) return Path.GetFullPath(named);
        var config = NonBlank(Environment.GetEnvironmentVariable("XDG_CONFIG_HOME"))
                     ?? (NonBlank(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile)) is { } home ? Path.Combine(home, ".config") : null);
        return config is null ? null : Path.Combine(config, "tpc", "appsettings.json");
    }

    /// <summary>Builds the configuration from the four sources; returns it and the arguments left for the command line.</summary>
    public static (ClientSettings Settings, string[] CommandArguments) Load(IReadOnlyList<string> arguments, string? baseDirectory = null)
    {
        var settings = arguments.Where(IsConfigurationArgument).ToArray();
        var rest = arguments.Where(a => !IsConfigurationArgument(a)).ToArray();
        IConfigurationBuilder configuration = new ConfigurationBuilder()
            .SetBasePath(baseDirectory ?? AppContext.BaseDirectory)
            .AddJsonFile("appsettings.json", optional: true, reloadOnChange: false);
        if (ProfilePath() is { } profile)
        {
            // A profile named by TPC_PROFILE must exist: a typo would otherwise silently reach another database.
            var named = NonBlank(Environment.GetEnvironmentVariable(ProfileVariable)) is not null;
            if (named && !File.Exists(profile)) throw new IOException($"{ProfileVariable} names {profile}, which does not exist");
            configuration = configuration.AddJsonFile(profile, optional: !named, reloadOnChange: false);
        }

        configuration = configuration
            .AddEnvironmentVariables()
            .AddCommandLine(settings);
        return (new ClientSettings(configuration.Build()), rest);
    }

    /// <summary>The coordinator database (it holds the cluster's membership table).</summary>
    public string CoordinatorDatabase()
    {
        var coordinator = NonBlank(Configuration.GetConnectionString("Coordinator"));
        if (coordinator is not null)
        {
            return WithDefaultTimeout(coordinator);
        }

        var server = NonBlank(Configuration.GetConnectionString(PostgresTopology.PostgresServerName));
        if (server is not null)
        {
            return WithDefaultTimeout(Derive(server).Coordinator);
        }

        throw CliException.Connection(
            "no database configured: set ConnectionStrings:Coordinator or ConnectionStrings:PostgresServer " +
            "(appsettings.json, environment ConnectionStrings__PostgresServer=..., or --ConnectionStrings:PostgresServer=...)");
    }

    /// <summary>
    /// The client's certificate and the cluster's CA when the cluster runs mutual TLS (<c>TwoPC:Tls:*</c>, as for
    /// the silos), else null. A bad setting is a usage error.
    /// </summary>
    public ClusterTls? Tls()
    {
        try
        {
            return ClusterTls.FromConfiguration(Configuration, server: false);
        }
        catch (ClusterTlsException ex)
        {
            throw CliException.Usage($"bad TLS configuration: {Output.OneLine(ex.Message)}");
        }
    }

    /// <summary>All four service databases (for <c>check</c>): given all together, or derived from the server.</summary>
    public ServiceDatabases AllDatabases()
    {
        var given = ServiceDatabases.Names.Select(name => (Name: name, Value: NonBlank(Configuration.GetConnectionString(name)))).ToList();
        if (given.All(g => g.Value is not null))
        {
            return new ServiceDatabases(
                WithDefaultTimeout(given[0].Value!), WithDefaultTimeout(given[1].Value!),
                WithDefaultTimeout(given[2].Value!), WithDefaultTimeout(given[3].Value!));
        }

        var server = NonBlank(Configuration.GetConnectionString(PostgresTopology.PostgresServerName));
        if (server is not null)
        {
            var derived = Derive(server);
            return new ServiceDatabases(
                WithDefaultTimeout(derived.Inventory), WithDefaultTimeout(derived.Payments),
                WithDefaultTimeout(derived.Shipping), WithDefaultTimeout(derived.Coordinator));
        }

        if (given.Any(g => g.Value is not null))
        {
            var missing = given.Where(g => g.Value is null).Select(g => $"ConnectionStrings:{g.Name}");
            throw CliException.Connection(
                $"incomplete database configuration: missing {string.Join(", ", missing)} " +
                "(give all four service databases, or ConnectionStrings:PostgresServer to derive them)");
        }

        throw CliException.Connection(
            "no database configured: set ConnectionStrings:PostgresServer (with TwoPC:DatabasePrefix) or all of " +
            "ConnectionStrings:Inventory, :Payments, :Shipping and :Coordinator");
    }

    /// <summary>Where a connection string points, without credentials (for messages).</summary>
    public static string Describe(string connectionString)
    {
        try
        {
            var builder = new Npgsql.NpgsqlConnectionStringBuilder(connectionString);
            return $"database '{builder.Database}' on {builder.Host}:{builder.Port}";
        }
        catch (ArgumentException)
        {
            return "(unparsable connection string)";
        }
    }

    private ServiceDatabases Derive(string server)
    {
        var prefix = NonBlank(Configuration[PostgresTopology.DatabasePrefixKey]) ?? PostgresTopology.DefaultDatabasePrefix;
        try
        {
            return PostgresTopology.DeriveDatabases(server, prefix);
        }
        catch (ArgumentException ex)
        {
            throw CliException.Usage($"bad database configuration: {Output.OneLine(ex.Message)}");
        }
    }

    private string WithDefaultTimeout(string connectionString)
    {
        PostgresTls tls;
        try
        {
            tls = PostgresTls.FromConfiguration(Configuration);
        }
        catch (PostgresSettingsException ex)
        {
            throw CliException.Usage($"bad database configuration: {Output.OneLine(ex.Message)}");
        }

        // The timeout step checks the string first, so a malformed one is a usage error, not a crash.
        return tls.Apply(WithDefaultTimeoutOnly(connectionString));
    }

    private static string WithDefaultTimeoutOnly(string connectionString)
    {
        DbConnectionStringBuilder raw;
        try
        {
            raw = new DbConnectionStringBuilder { ConnectionString = connectionString };
        }
        catch (ArgumentException ex)
        {
            throw CliException.Usage($"bad connection string: {Output.OneLine(ex.Message)}");
        }

        if (TimeoutKeys.Any(raw.ContainsKey))
        {
            return connectionString;
        }

        raw["Timeout"] = DefaultDatabaseTimeoutSeconds.ToString(CultureInfo.InvariantCulture);
        return raw.ConnectionString;
    }

    private TimeSpan ReadDuration(string key, TimeSpan fallback)
    {
        var text = NonBlank(Configuration[key]);
        if (text is null)
        {
            return fallback;
        }

        if (TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var value) && value > TimeSpan.Zero)
        {
            return value;
        }

        throw CliException.Usage($"bad value for {key}: '{text}' (expected a positive duration such as 00:00:10)");
    }

    private static string? NonBlank(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();
}
