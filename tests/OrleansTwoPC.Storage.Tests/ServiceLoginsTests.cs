using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>
/// One PostgreSQL login per service with exactly the rights its silos need (<see cref="ServiceLogins"/>),
/// checked against a real server: the privilege matrix read from PostgreSQL's catalogue, and real connections
/// that are refused ("permission denied") where a service must not reach. The embedded server trusts local
/// connections, so passwords are not what is tested here; the grants are.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ServiceLoginsTests(PostgresFixture fixture)
{
    private static readonly string[] Tables = ["orleansquery", "orleansstorage", "orleansmembershiptable", "orleansmembershipversiontable", "orleansreminderstable"];
    private static readonly string[] Privileges = ["SELECT", "INSERT", "UPDATE", "DELETE"];

    private static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();

    private static (string Prefix, List<ServiceLogin> Logins) NewLogins(bool withClient = true)
    {
        var prefix = $"lp_{Guid.NewGuid():N}"[..15];
        var services = ServiceLogins.Services.Select(s => s.Service).Concat(withClient ? [ServiceLogins.Client] : []);
        return (prefix, services.Select(s => new ServiceLogin(s, $"{prefix}_{s}", Guid.NewGuid().ToString("N"))).ToList());
    }

    [Fact]
    public async Task Each_login_has_exactly_its_services_rights_and_may_create_nothing()
    {
        var (prefix, logins) = NewLogins();
        var databases = await ServiceLogins.ProvisionAsync(fixture.Server.AdminConnectionString, prefix, logins);
        // Running it again (new passwords, same rights) is harmless.
        await ServiceLogins.ProvisionAsync(fixture.Server.AdminConnectionString, prefix, logins.Select(l => l with { Password = "again" }).ToList());

        foreach (var login in logins)
        {
            foreach (var (name, connectionString) in databases.All)
            {
                var database = PostgresConnectionStrings.DatabaseOf(connectionString);
                var isCluster = name == "Coordinator";
                var owns = login.Service != ServiceLogins.Client && ServiceLogins.DatabaseOf(login.Service) == name;
                Assert.True((owns || isCluster) == await HasAsync(fixture.Server.AdminConnectionString, $"has_database_privilege('{login.User}', '{database}', 'CONNECT')"),
                    $"{login.Service} CONNECT {name}");
                Assert.False(await HasAsync(fixture.Server.AdminConnectionString, $"has_database_privilege('{login.User}', '{database}', 'CREATE')"), $"{login.Service} CREATE {name}");
                Assert.False(await HasAsync(fixture.Server.AdminConnectionString, $"has_database_privilege('{login.User}', '{database}', 'TEMPORARY')"), $"{login.Service} TEMPORARY {name}");
                Assert.False(await HasAsync(connectionString, $"has_schema_privilege('{login.User}', 'public', 'CREATE')"), $"{login.Service} may create tables in {name}");
                foreach (var table in Tables)
                {
                    foreach (var privilege in Privileges)
                    {
                        var expected = Expected(login.Service, name, table, privilege);
                        Assert.True(expected == await HasAsync(connectionString, $"has_table_privilege('{login.User}', '{table}', '{privilege}')"),
                            $"{login.Service} {privilege} {name}.{table}: expected {expected}");
                    }
                }
            }
        }
    }

    /// <summary>The rights, written out independently of <see cref="ServiceLogins.Grants"/>.</summary>
    private static bool Expected(string service, string database, string table, string privilege)
    {
        var select = privilege == "SELECT";
        if (service == ServiceLogins.Client)
            return database == "Coordinator" && select && (table is "orleansquery" or "orleansmembershiptable" or "orleansmembershipversiontable");
        var own = ServiceLogins.DatabaseOf(service) == database;
        return table switch
        {
            "orleansquery" => select && (own || database == "Coordinator"),
            "orleansstorage" => own,
            _ => database == "Coordinator",
        };
    }

    [Fact]
    public async Task The_payment_login_reaches_its_own_database_and_is_refused_the_others()
    {
        var (prefix, logins) = NewLogins(withClient: false);
        var databases = await ServiceLogins.ProvisionAsync(fixture.Server.AdminConnectionString, prefix, logins);
        var payment = logins.Single(l => l.Service == "payment");
        string As(ServiceLogin login, string database) => new NpgsqlConnectionStringBuilder(databases[database]) { Username = login.User, Pooling = false }.ConnectionString;

        // Its own database: read and write its grains' rows.
        Assert.Equal(0L, await ScalarAsync(As(payment, "Payments"), "SELECT count(*) FROM orleansstorage WHERE grainidhash = 0"));
        await ScalarAsync(As(payment, "Payments"), "UPDATE orleansstorage SET version = version WHERE grainidhash = 0 RETURNING 1");
        // The cluster's tables in the coordinator database: yes; the coordinators' decisions there: no.
        await ScalarAsync(As(payment, "Coordinator"), "SELECT count(*) FROM orleansmembershiptable");
        var decisions = await Assert.ThrowsAsync<PostgresException>(() => ScalarAsync(As(payment, "Coordinator"), "SELECT count(*) FROM orleansstorage"));
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, decisions.SqlState);
        Assert.Equal("permission denied for table orleansstorage", decisions.MessageText);
        // Inventory's database: not even a connection.
        var inventory = await Assert.ThrowsAsync<PostgresException>(() => ScalarAsync(As(payment, "Inventory"), "SELECT count(*) FROM orleansstorage"));
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, inventory.SqlState);
        Assert.StartsWith($"permission denied for database \"{prefix}_inventory\"", inventory.MessageText);
        // And nothing new: no table of its own, anywhere.
        var create = await Assert.ThrowsAsync<PostgresException>(() => ScalarAsync(As(payment, "Payments"), "CREATE TABLE stolen (x int)"));
        Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, create.SqlState);

        // A silo with this login alone starts without creating anything, holding only payments and the cluster's tables.
        var config = Config(
            ("ConnectionStrings:Payments", As(payment, "Payments")),
            ("ConnectionStrings:Coordinator", As(payment, "Coordinator")),
            (PostgresTopology.ProvisionKey, "false"));
        await using var runtime = await PostgresTopology.StartAsync(config, NullLogger.Instance, ["Payments", "Coordinator"]);
        Assert.True(runtime.Databases.Has("Payments"));
        Assert.False(runtime.Databases.Has("Inventory"));
        Assert.Contains("Inventory=[none]", runtime.Databases.ToString());

        // Asked to provision with it, the silo says what to do instead.
        var provisioning = await Assert.ThrowsAsync<PostgresSettingsException>(() =>
            PostgresTopology.StartAsync(Config(("ConnectionStrings:Payments", As(payment, "Payments")), ("ConnectionStrings:Coordinator", As(payment, "Coordinator"))),
                NullLogger.Instance, ["Payments", "Coordinator"]));
        Assert.Contains($"User '{payment.User}' may not change the schema", provisioning.Message);
        Assert.Contains("TwoPC:ProvisionDatabases=false", provisioning.Message);

        // Without its own database's connection string it does not start.
        var missing = await Assert.ThrowsAsync<PostgresSettingsException>(() =>
            PostgresTopology.StartAsync(Config(("ConnectionStrings:Coordinator", As(payment, "Coordinator")), (PostgresTopology.ProvisionKey, "false")),
                NullLogger.Instance, ["Payments", "Coordinator"]));
        Assert.Contains("Missing: ConnectionStrings:Payments", missing.Message);
    }

    [Fact]
    public async Task A_silo_that_may_not_provision_is_told_when_the_schema_is_missing()
    {
        var empty = $"lp_empty_{Guid.NewGuid():N}"[..20];
        await DatabaseProvisioner.EnsureDatabaseAsync(fixture.Server.AdminConnectionString, empty);
        var config = Config(("ConnectionStrings:Payments", fixture.Server.ConnectionStringFor(empty)),
            ("ConnectionStrings:Coordinator", fixture.Databases.Coordinator), (PostgresTopology.ProvisionKey, "false"));
        var ex = await Assert.ThrowsAsync<PostgresSettingsException>(() => PostgresTopology.StartAsync(config, NullLogger.Instance, ["Payments", "Coordinator"]));
        Assert.Contains($"database '{empty}'", ex.Message);
        Assert.Contains("has no schema; provision the databases first", ex.Message);
        Assert.Equal(0L, await ScalarAsync(fixture.Server.ConnectionStringFor(empty), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"));
    }

    [Fact]
    public void Logins_come_from_configuration_with_a_password_each_and_names_of_their_own()
    {
        var passwordFile = Path.GetTempFileName();
        try
        {
            File.WriteAllText(passwordFile, "from-a-file\n");
            var logins = ServiceLogins.FromConfiguration(Config(
                ("TwoPC:Logins:coordinator:Password", "c"), ("TwoPC:Logins:inventory:Password", "i"),
                ("TwoPC:Logins:payment:PasswordFile", passwordFile), ("TwoPC:Logins:shipping:Password", "s"),
                ("TwoPC:Logins:shipping:User", "ship_login")), "shop");
            Assert.Equal(["coordinator", "inventory", "payment", "shipping"], logins.Select(l => l.Service));
            Assert.Equal("shop_payment", logins[2].User);
            Assert.Equal("from-a-file", logins[2].Password);
            Assert.Equal("ship_login", logins[3].User);
        }
        finally
        {
            File.Delete(passwordFile);
        }

        Assert.StartsWith("TwoPC:Logins:inventory:Password (or :PasswordFile) is required",
            Assert.Throws<PostgresSettingsException>(() => ServiceLogins.FromConfiguration(Config(("TwoPC:Logins:coordinator:Password", "c")), "shop")).Message);
        Assert.Equal("payment and shipping share the login 'same'; each service needs its own",
            Assert.Throws<PostgresSettingsException>(() => ServiceLogins.FromConfiguration(Config(
                ("TwoPC:Logins:coordinator:Password", "c"), ("TwoPC:Logins:inventory:Password", "i"),
                ("TwoPC:Logins:payment:Password", "p"), ("TwoPC:Logins:payment:User", "same"),
                ("TwoPC:Logins:shipping:Password", "s"), ("TwoPC:Logins:shipping:User", "same")), "shop")).Message);
        Assert.StartsWith("TwoPC:Logins:coordinator:User 'Robert\"; DROP' is not allowed",
            Assert.Throws<PostgresSettingsException>(() => ServiceLogins.FromConfiguration(Config(
                ("TwoPC:Logins:coordinator:Password", "c"), ("TwoPC:Logins:coordinator:User", "Robert\"; DROP"),
                ("TwoPC:Logins:inventory:Password", "i"), ("TwoPC:Logins:payment:Password", "p"), ("TwoPC:Logins:shipping:Password", "s")), "shop")).Message);
    }

    private static async Task<bool> HasAsync(string connectionString, string expression) =>
        (bool)(await ScalarAsync(connectionString, $"SELECT {expression}"))!;

    private static async Task<object?> ScalarAsync(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteScalarAsync();
    }
}
