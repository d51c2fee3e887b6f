using Npgsql;

namespace OrleansTwoPC.Storage.Tests;

[Collection(PostgresCollection.Name)]
public sealed class SchemaTests(PostgresFixture fixture)
{
    public static TheoryData<string> ServiceNames => new(ServiceDatabases.Names);

    [Fact]
    public void Scripts_are_embedded_in_name_order()
    {
        var names = SchemaApplier.Scripts.Select(s => s.Name).ToList();

        Assert.Equal(["001_orleans_query.sql", "010_grain_storage.sql", "020_reminders.sql", "030_clustering.sql", "040_recovery_indexes.sql", "050_twopc_grain_state.sql", "060_twopc_state_entry.sql", "070_twopc_grain_state_open.sql"], names);
    }

    [Fact]
    public async Task Schema_applies_again_without_error()
    {
        // The fixture applied it once already; twice more must be harmless.
        await PostgresTopology.ApplySchemaAsync(fixture.Databases);
        await PostgresTopology.ApplySchemaAsync(fixture.Databases);

        var count = await QueryRunner.ScalarAsync(fixture.Databases.Coordinator, "SELECT count(*) FROM OrleansQuery");
        Assert.Equal((long)OrleansSchema.AllQueryKeys.Count, count);
    }

    [Fact]
    public async Task Concurrent_applies_on_a_fresh_database_all_succeed()
    {
        // Simulates silos starting together: the advisory lock must serialise them.
        await DatabaseProvisioner.EnsureDatabaseAsync(fixture.Server.AdminConnectionString, "schema_race");
        var connectionString = fixture.Server.ConnectionStringFor("schema_race");

        await Task.WhenAll(Enumerable.Range(0, 6).Select(_ => Task.Run(() => SchemaApplier.ApplyAsync(connectionString))));

        var count = await QueryRunner.ScalarAsync(connectionString, "SELECT count(*) FROM OrleansQuery");
        Assert.Equal((long)OrleansSchema.AllQueryKeys.Count, count);
    }

    [Fact]
    public async Task Reapplying_the_schema_does_not_wait_for_in_flight_writes()
    {
        // Silos re-apply the schema on start while others are writing; that must not block.
        var connectionString = await fixture.CreateDatabaseAsync("schema_no_block");
        await using var writer = new NpgsqlConnection(connectionString);
        await writer.OpenAsync();
        await using var open = await writer.BeginTransactionAsync();
        await using (var write = new NpgsqlCommand(
            "SELECT orleans_storage_write(1, 0, 1, 1, 'x', NULL, 's', NULL, NULL)", writer, open))
        {
            Assert.Equal(1, await write.ExecuteScalarAsync());
        }

        var apply = SchemaApplier.ApplyAsync(connectionString);
        var finished = await Task.WhenAny(apply, Task.Delay(TimeSpan.FromSeconds(10)));

        await open.CommitAsync();
        Assert.Same(apply, finished);
        await apply;
    }

    [Fact]
    public async Task Concurrent_database_creation_creates_once()
    {
        var results = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ =>
            Task.Run(() => DatabaseProvisioner.EnsureDatabaseAsync(fixture.Server.AdminConnectionString, "create_race"))));

        Assert.Equal(1, results.Count(created => created));
    }

    [Theory]
    [MemberData(nameof(ServiceNames))]
    public async Task Every_provider_query_key_exists_in_every_service_database(string service)
    {
        await using var connection = new NpgsqlConnection(fixture.Databases[service]);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT QueryKey, QueryText FROM OrleansQuery", connection);
        var texts = new Dictionary<string, string>();
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                texts[reader.GetString(0)] = reader.GetString(1);
            }
        }

        foreach (var key in OrleansSchema.AllQueryKeys)
        {
            Assert.True(texts.ContainsKey(key), $"{key} missing in {service}");
            Assert.False(string.IsNullOrWhiteSpace(texts[key]), $"{key} is empty in {service}");
        }
    }

    [Fact]
    public async Task Service_databases_are_distinct_databases_on_the_server()
    {
        var names = new HashSet<string>();
        foreach (var (_, connectionString) in fixture.Databases.All)
        {
            names.Add((string)(await QueryRunner.ScalarAsync(connectionString, "SELECT current_database()"))!);
        }

        Assert.Equal(["fixture_coordinator", "fixture_inventory", "fixture_payments", "fixture_shipping"], names.Order());
    }
}
