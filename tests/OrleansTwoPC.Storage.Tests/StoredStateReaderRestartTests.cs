using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>The state reader (recovery, admin views, the checker) keeps working across a database restart.</summary>
public sealed class StoredStateReaderRestartTests
{
    [Fact]
    public async Task Reads_after_a_restart_do_not_fail_on_the_pools_dead_connections()
    {
        await using var server = await EmbeddedPostgres.StartNewAsync();
        var databases = await PostgresTopology.ProvisionOnServerAsync(server.AdminConnectionString, $"restart{Environment.ProcessId}");
        var reader = new StoredStateReader(databases);
        // Fills the pools with idle connections, which the restart kills.
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => reader.CoordinatorsAsync(unfinishedOnly: false)));

        await server.StopAsync();
        await server.StartAsync();

        Assert.Empty(await reader.CoordinatorsAsync(unfinishedOnly: false));
        Assert.Empty(await reader.InventoryAsync(withPreparedOnly: true));
    }
}
