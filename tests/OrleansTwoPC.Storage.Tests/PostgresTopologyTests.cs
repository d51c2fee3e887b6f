using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace OrleansTwoPC.Storage.Tests;

[Collection(PostgresCollection.Name)]
public sealed class PostgresTopologyTests(PostgresFixture fixture)
{
    private static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value)))
            .Build();

    [Fact]
    public async Task PostgresServer_override_derives_and_provisions_four_databases_on_that_server()
    {
        var config = Config(
            ("ConnectionStrings:PostgresServer", fixture.Server.AdminConnectionString),
            ("TwoPC:DatabasePrefix", "topo"));

        await using var runtime = await PostgresTopology.StartAsync(config, NullLogger.Instance);

        Assert.Equal(PostgresSource.Server, runtime.Source);
        Assert.Null(runtime.EmbeddedServer);
        foreach (var (name, connectionString) in runtime.Databases.All)
        {
            var builder = new NpgsqlConnectionStringBuilder(connectionString);
            Assert.Equal(fixture.Server.Port, builder.Port);
            Assert.Equal($"topo_{name.ToLowerInvariant()}", builder.Database);
            Assert.Equal(PostgresConnectionStrings.DefaultMaximumPoolSize, builder.MaxPoolSize);
            Assert.Equal((long)OrleansSchema.AllQueryKeys.Count,
                await QueryRunner.ScalarAsync(connectionString, "SELECT count(*) FROM OrleansQuery"));
        }

        // Idempotent: a second silo starting with the same configuration just works.
        await using var again = await PostgresTopology.StartAsync(config, NullLogger.Instance);
        Assert.Equal(runtime.Databases, again.Databases);
    }

    [Fact]
    public async Task Explicit_connection_strings_are_used_and_created_when_missing()
    {
        string For(string db) => PostgresConnectionStrings.WithDatabase(fixture.Server.AdminConnectionString, db) + ";Maximum Pool Size=7";
        var config = Config(
            ("ConnectionStrings:Inventory", For("explicit_inv")),
            ("ConnectionStrings:Payments", For("explicit_pay")),
            ("ConnectionStrings:Shipping", For("explicit_ship")),
            ("ConnectionStrings:Coordinator", For("explicit_coord")),
            // Ignored: explicit databases win.
            ("ConnectionStrings:PostgresServer", "Host=invalid.invalid"));

        await using var runtime = await PostgresTopology.StartAsync(config, NullLogger.Instance);

        Assert.Equal(PostgresSource.ConnectionStrings, runtime.Source);
        var builder = new NpgsqlConnectionStringBuilder(runtime.Databases.Payments);
        Assert.Equal("explicit_pay", builder.Database);
        Assert.Equal(7, builder.MaxPoolSize); // the user's pool size is kept
        Assert.Equal("explicit_coord", await QueryRunner.ScalarAsync(runtime.Databases.Coordinator, "SELECT current_database()"));
        Assert.NotNull(await QueryRunner.ScalarAsync(runtime.Databases.Shipping, "SELECT QueryText FROM OrleansQuery WHERE QueryKey = 'WriteToStorageKey'"));
    }

    [Fact]
    public async Task Partial_explicit_connection_strings_are_rejected_clearly()
    {
        var config = Config(
            ("ConnectionStrings:Inventory", fixture.Databases.Inventory),
            ("ConnectionStrings:Payments", fixture.Databases.Payments));

        var ex = await Assert.ThrowsAsync<PostgresSettingsException>(() => PostgresTopology.StartAsync(config, NullLogger.Instance));

        Assert.Contains("ConnectionStrings:Shipping", ex.Message);
        Assert.Contains("ConnectionStrings:Coordinator", ex.Message);
    }

    [Theory]
    [InlineData("Host=h;Username=u;Database=d", true)]
    [InlineData("Host=h;Username=u;Database=d;No Reset On Close=false", false)]
    [InlineData("Host=h;Username=u;Database=d;NoResetOnClose=true", true)]
    public void Grain_storage_connections_skip_the_session_reset_unless_the_user_chose(string connectionString, bool expected)
    {
        var result = new NpgsqlConnectionStringBuilder(PostgresConnectionStrings.WithoutSessionReset(connectionString));
        Assert.Equal(expected, result.NoResetOnClose);
        Assert.Equal("d", result.Database);
    }

    [Fact]
    public async Task Provisioned_databases_share_wal_flushes_through_commit_delay_unless_it_is_zero()
    {
        var tuned = $"gc{Guid.NewGuid():N}"[..12];
        var untouched = $"gc{Guid.NewGuid():N}"[..12];

        await using (var runtime = await PostgresTopology.StartAsync(
            Config(("ConnectionStrings:PostgresServer", fixture.Server.AdminConnectionString), ("TwoPC:DatabasePrefix", tuned)), NullLogger.Instance))
        {
            foreach (var (_, connectionString) in runtime.Databases.All)
            {
                Assert.Equal("500", await QueryRunner.ScalarAsync(connectionString, "SHOW commit_delay"));
                Assert.Equal("1", await QueryRunner.ScalarAsync(connectionString, "SHOW commit_siblings"));
            }
        }

        await using (var runtime = await PostgresTopology.StartAsync(
            Config(("ConnectionStrings:PostgresServer", fixture.Server.AdminConnectionString), ("TwoPC:DatabasePrefix", untouched),
                (GroupCommitSettings.CommitDelayKey, "0")), NullLogger.Instance))
        {
            Assert.Equal("0", await QueryRunner.ScalarAsync(runtime.Databases.Coordinator, "SHOW commit_delay"));
            Assert.Equal("5", await QueryRunner.ScalarAsync(runtime.Databases.Coordinator, "SHOW commit_siblings"));
        }
    }

    [Fact]
    public async Task Silos_setting_group_commit_on_one_database_at_once_all_succeed()
    {
        // The first setting of a database is a catalog row: two at once collide unless they take turns.
        for (var round = 0; round < 10; round++)
        {
            var database = $"gcrace{Guid.NewGuid():N}"[..14];
            await DatabaseProvisioner.EnsureDatabaseAsync(fixture.Server.AdminConnectionString, database);
            var connectionString = PostgresConnectionStrings.WithDatabase(fixture.Server.AdminConnectionString, database);
            // Opened before they start, so the settings are written at nearly the same moment.
            var start = new TaskCompletionSource();
            var silos = Enumerable.Range(0, 6).Select(async _ => { await start.Task; return await GroupCommitSettings.ApplyAsync(connectionString, 300); }).ToList();
            start.SetResult();

            Assert.All(await Task.WhenAll(silos), Assert.True);
            Assert.Equal("300", await QueryRunner.ScalarAsync(connectionString, "SHOW commit_delay"));
        }
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("1.5")]
    [InlineData("500us")]
    [InlineData("100001")]
    public async Task A_bad_commit_delay_is_refused_before_anything_is_created(string value)
    {
        var prefix = $"gcbad{Guid.NewGuid():N}"[..12];
        var ex = await Assert.ThrowsAsync<PostgresSettingsException>(() => PostgresTopology.StartAsync(
            Config(("ConnectionStrings:PostgresServer", fixture.Server.AdminConnectionString), ("TwoPC:DatabasePrefix", prefix),
                (GroupCommitSettings.CommitDelayKey, value)), NullLogger.Instance));

        Assert.Contains(GroupCommitSettings.CommitDelayKey, ex.Message);
        Assert.Contains(value, ex.Message);
        Assert.Equal(0L, await QueryRunner.ScalarAsync(fixture.Server.AdminConnectionString, $"SELECT count(*) FROM pg_database WHERE datname LIKE '{prefix}%'"));
    }

    [Fact]
    public async Task A_login_that_may_not_set_commit_delay_changes_nothing()
    {
        var database = $"gcuser{Guid.NewGuid():N}"[..14];
        var user = $"u{Guid.NewGuid():N}"[..12];
        await DatabaseProvisioner.EnsureDatabaseAsync(fixture.Server.AdminConnectionString, database);
        await QueryRunner.ScalarAsync(fixture.Server.AdminConnectionString, $"CREATE ROLE {user} LOGIN PASSWORD 'pw'");
        await QueryRunner.ScalarAsync(fixture.Server.AdminConnectionString, $"ALTER DATABASE {database} OWNER TO {user}");
        var asUser = new NpgsqlConnectionStringBuilder(PostgresConnectionStrings.WithDatabase(fixture.Server.AdminConnectionString, database))
        {
            Username = user,
            Password = "pw",
        }.ConnectionString;

        Assert.False(await GroupCommitSettings.ApplyAsync(asUser, 500));

        var asAdmin = PostgresConnectionStrings.WithDatabase(fixture.Server.AdminConnectionString, database);
        Assert.Equal("0", await QueryRunner.ScalarAsync(asAdmin, "SHOW commit_delay"));
        Assert.Equal("5", await QueryRunner.ScalarAsync(asAdmin, "SHOW commit_siblings"));
    }

    [Fact]
    public void Invalid_prefix_is_rejected()
    {
        Assert.Throws<ArgumentException>(() => PostgresTopology.DeriveDatabases(fixture.Server.AdminConnectionString, "Bad-Prefix"));
    }

    [Fact]
    public async Task Without_configuration_an_embedded_server_is_started_and_stopped_on_dispose()
    {
        var runtime = await PostgresTopology.StartAsync(Config(), NullLogger.Instance);
        var server = runtime.EmbeddedServer;
        try
        {
            Assert.Equal(PostgresSource.Embedded, runtime.Source);
            Assert.NotNull(server);
            Assert.Equal("twopc_inventory", await QueryRunner.ScalarAsync(runtime.Databases.Inventory, "SELECT current_database()"));
        }
        finally
        {
            await runtime.DisposeAsync();
        }

        Assert.False(server!.IsRunning);
        Assert.False(Directory.Exists(server.DataDirectory));
    }
}
