using System.Text.RegularExpressions;
using Microsoft.Extensions.Configuration;
using Npgsql;

namespace OrleansTwoPC.Storage;

/// <summary>A PostgreSQL login for one service (a silo role, or the read-only <c>client</c>).</summary>
public sealed record ServiceLogin(string Service, string User, string Password);

/// <summary>
/// Least privilege per service: one PostgreSQL login per service role with exactly the rights its silos
/// need, created by an operator step with an owner's (admin) connection, not by the silos.
/// <list type="bullet">
/// <item>Every service's own database: CONNECT, SELECT on <c>orleansquery</c>, SELECT/INSERT/UPDATE/DELETE on
/// <c>orleansstorage</c>, <c>twopc_grain_state</c> and <c>twopc_state_entry</c> (its grains' state, of either provider). No other login may connect to it.</item>
/// <item>The coordinator database also holds the cluster's membership and reminder tables, which every silo
/// uses: each service login may CONNECT there and read and write <c>orleansmembershiptable</c>,
/// <c>orleansmembershipversiontable</c> and <c>orleansreminderstable</c>, never <c>orleansstorage</c>
/// (the coordinators' decisions), which only the coordinator login may.</item>
/// <item>The optional <c>client</c> login (for <c>tpc</c> commands that go through the cluster) may only read
/// the membership tables, to find the gateways.</item>
/// </list>
/// No login may create anything. The invariant checker (<c>tpc check</c>) is an operator tool that reads all
/// four databases: it runs with the admin connection or all four logins.
/// </summary>
public static partial class ServiceLogins
{
    public const string Section = "TwoPC:Logins";
    public const string Client = "client";

    /// <summary>The silo roles (<c>TwoPC:Roles</c> names) and the database each one owns.</summary>
    public static IReadOnlyList<(string Service, string Database)> Services { get; } =
        [("coordinator", "Coordinator"), ("inventory", "Inventory"), ("payment", "Payments"), ("shipping", "Shipping")];

    private static readonly string[] ClusterTables = ["orleansmembershiptable", "orleansmembershipversiontable", "orleansreminderstable"];

    /// <summary>The database a service role owns (its <c>ConnectionStrings:</c> name).</summary>
    public static string DatabaseOf(string service) =>
        Services.FirstOrDefault(s => s.Service == service).Database ?? throw new ArgumentException($"unknown service '{service}'", nameof(service));

    /// <summary>
    /// The databases a silo of these roles opens: each role's own, and Coordinator for the cluster's tables.
    /// </summary>
    public static IReadOnlyList<string> DatabasesFor(IEnumerable<string> roles) =>
        ServiceDatabases.Names.Where(n => n == "Coordinator" || roles.Select(DatabaseOf).Contains(n)).ToList();

    /// <summary>
    /// The logins from <c>TwoPC:Logins:&lt;service&gt;:Password</c> (or <c>:PasswordFile</c>, a mounted secret) and
    /// <c>:User</c> (default <c>{prefix}_{service}</c>): the four service logins are required, the client's is optional.
    /// </summary>
    public static IReadOnlyList<ServiceLogin> FromConfiguration(IConfiguration configuration, string prefix)
    {
        var logins = new List<ServiceLogin>();
        foreach (var service in Services.Select(s => s.Service).Append(Client))
        {
            var section = configuration.GetSection($"{Section}:{service}");
            var user = string.IsNullOrWhiteSpace(section["User"]) ? $"{prefix}_{service}" : section["User"]!.Trim();
            var password = ReadPassword(section, $"{Section}:{service}");
            if (password is null)
            {
                if (service == Client) continue;
                throw new PostgresSettingsException($"{Section}:{service}:Password (or :PasswordFile) is required: every service gets a login of its own");
            }

            if (!IsValidUser(user))
                throw new PostgresSettingsException($"{Section}:{service}:User '{user}' is not allowed: use 1-63 characters of a-z, 0-9 and _, starting with a letter or _");
            logins.Add(new ServiceLogin(service, user, password));
        }

        var shared = logins.GroupBy(l => l.User).FirstOrDefault(g => g.Count() > 1);
        return shared is null
            ? logins
            : throw new PostgresSettingsException($"{string.Join(" and ", shared.Select(l => l.Service))} share the login '{shared.Key}'; each service needs its own");
    }

    /// <summary>The statements, database by database, that give <paramref name="login"/> its rights (and no more).</summary>
    public static IReadOnlyList<(string Database, string Sql)> Grants(ServiceDatabases databases, ServiceLogin login)
    {
        var user = Quote(login.User);
        var coordinator = PostgresConnectionStrings.DatabaseOf(databases.Coordinator);
        var result = new List<(string, string)>
        {
            (coordinator, $"GRANT CONNECT ON DATABASE {Quote(coordinator)} TO {user}"),
            (coordinator, $"GRANT SELECT ON orleansquery TO {user}"),
        };
        if (login.Service == Client)
        {
            result.Add((coordinator, $"GRANT SELECT ON orleansmembershiptable, orleansmembershipversiontable TO {user}"));
            return result;
        }

        result.Add((coordinator, $"GRANT SELECT, INSERT, UPDATE, DELETE ON {string.Join(", ", ClusterTables)} TO {user}"));
        var own = PostgresConnectionStrings.DatabaseOf(databases[DatabaseOf(login.Service)]);
        if (own != coordinator)
        {
            result.Add((own, $"GRANT CONNECT ON DATABASE {Quote(own)} TO {user}"));
            result.Add((own, $"GRANT SELECT ON orleansquery TO {user}"));
        }

        result.Add((own, $"GRANT SELECT, INSERT, UPDATE, DELETE ON orleansstorage, twopc_grain_state, twopc_state_entry TO {user}"));
        return result;
    }

    /// <summary>
    /// Creates the databases and schema if missing, then the logins (or sets their passwords) and their rights,
    /// through an admin connection. Safe to run again; it also takes back CONNECT from PUBLIC on the four databases.
    /// </summary>
    public static Task<ServiceDatabases> ProvisionAsync(
        string adminConnectionString, string prefix, IReadOnlyList<ServiceLogin> logins, CancellationToken cancellationToken = default) =>
        ProvisionAsync(adminConnectionString, prefix, logins, GroupCommitSettings.DefaultCommitDelayMicroseconds, cancellationToken);

    /// <summary>As above, with <paramref name="commitDelayMicroseconds"/> of group commit (see <see cref="GroupCommitSettings"/>).</summary>
    public static async Task<ServiceDatabases> ProvisionAsync(
        string adminConnectionString, string prefix, IReadOnlyList<ServiceLogin> logins, int commitDelayMicroseconds, CancellationToken cancellationToken = default)
    {
        var databases = await PostgresTopology.ProvisionOnServerAsync(
            adminConnectionString, prefix, commitDelayMicroseconds, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance, cancellationToken).ConfigureAwait(false);
        var admin = new NpgsqlConnectionStringBuilder(adminConnectionString) { Pooling = false };
        await using (var connection = new NpgsqlConnection(admin.ConnectionString))
        {
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            foreach (var login in logins)
            {
                await CreateLoginAsync(connection, login, cancellationToken).ConfigureAwait(false);
            }

            foreach (var (_, connectionString) in databases.All)
            {
                await ExecuteAsync(connection, $"REVOKE ALL ON DATABASE {Quote(PostgresConnectionStrings.DatabaseOf(connectionString))} FROM PUBLIC", cancellationToken).ConfigureAwait(false);
            }
        }

        foreach (var group in logins.SelectMany(l => Grants(databases, l)).GroupBy(g => g.Database))
        {
            admin.Database = group.Key;
            await using var connection = new NpgsqlConnection(admin.ConnectionString);
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            foreach (var (_, sql) in group)
            {
                await ExecuteAsync(connection, sql, cancellationToken).ConfigureAwait(false);
            }
        }

        return databases;
    }

    /// <summary>A service's connection string: the server of <paramref name="serverConnectionString"/>, its login, one database.</summary>
    public static string ConnectionString(string serverConnectionString, string database, ServiceLogin login, bool withPassword) =>
        new NpgsqlConnectionStringBuilder(serverConnectionString)
        {
            Database = database,
            Username = login.User,
            Password = withPassword ? login.Password : null,
        }.ConnectionString;

    public static bool IsValidUser(string user) => UserPattern().IsMatch(user);

    private static async Task CreateLoginAsync(NpgsqlConnection connection, ServiceLogin login, CancellationToken cancellationToken)
    {
        try
        {
            await ExecuteAsync(connection,
                $"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{login.User}') THEN CREATE ROLE {Quote(login.User)}; END IF; END $$",
                cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException ex) when (ex.SqlState is PostgresErrorCodes.DuplicateObject or PostgresErrorCodes.UniqueViolation)
        {
            // Another provisioning run created it meanwhile.
        }

        // Utility statements take no parameters: the password goes in as a quoted literal.
        await ExecuteAsync(connection,
            $"ALTER ROLE {Quote(login.User)} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD {Literal(login.Password)}",
            cancellationToken).ConfigureAwait(false);
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
    }

    private static string? ReadPassword(IConfigurationSection section, string name)
    {
        var password = section["Password"];
        var file = section["PasswordFile"];
        if (string.IsNullOrWhiteSpace(file)) return string.IsNullOrEmpty(password) ? null : password;
        if (!string.IsNullOrEmpty(password)) throw new PostgresSettingsException($"{name}:Password and {name}:PasswordFile are both set; give one");
        try
        {
            var text = File.ReadAllText(file.Trim()).TrimEnd('\r', '\n');
            return text.Length > 0 ? text : throw new PostgresSettingsException($"{name}:PasswordFile {file} is empty");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new PostgresSettingsException($"{name}:PasswordFile: cannot read {file}: {ex.Message}", ex);
        }
    }

    // Names are validated (plain lower-case identifiers), so quoting is only for form.
    private static string Quote(string identifier) => $"\"{identifier}\"";

    private static string Literal(string text) =>
        text.Contains('\0')
            ? throw new PostgresSettingsException("a password may not contain a NUL character")
            : $"E'{text.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "''", StringComparison.Ordinal)}'";

    [GeneratedRegex("^[a-z_][a-z0-9_]{0,62}$")]
    private static partial Regex UserPattern();
}
