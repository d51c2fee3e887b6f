using System.Text.Json;
using Npgsql;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Client.Tests.Checking;

/// <summary>The state reader finds ids under their exact string and leaves rows of the old numeric key mapping out.</summary>
[Collection(PostgresCollection.Name)]
public sealed class StoredStateReaderKeyTests(PostgresFixture fixture)
{
    [Fact]
    public async Task Escaped_keys_are_read_back_exactly_and_numeric_rows_of_the_old_mapping_are_only_counted()
    {
        var databases = await fixture.ResetAsync();
        var ids = new[] { "cafe", "CAFE", "0cafe", "12345", "012345", Guid.NewGuid().ToString("N"), "SKU-1", "~x" };
        for (var i = 0; i < ids.Length; i++)
            await World.WriteStateAsync(databases.Inventory, StateNames.Inventory, ids[i],
                new ParticipantRecord<EscrowCounter, long> { Resource = new EscrowCounter { Exists = true, Committed = i, SuppliedTotal = i } });
        // A row as Orleans wrote "cafe" before the escaping: the number in grainidn1, no extension string.
        await using (var connection = new NpgsqlConnection(databases.Inventory))
        {
            await connection.OpenAsync();
            await using var insert = new NpgsqlCommand(
                "INSERT INTO orleansstorage (grainidhash, grainidn0, grainidn1, graintypehash, graintypestring, grainidextensionstring, serviceid, payloadbinary, version) " +
                "VALUES (1, 0, 51966, 0, @state, '', 'client-tests', @payload, 1)", connection);
            insert.Parameters.AddWithValue("state", StateNames.Inventory);
            insert.Parameters.AddWithValue("payload", JsonSerializer.SerializeToUtf8Bytes(new ParticipantRecord<EscrowCounter, long>(), StateJson.Options));
            await insert.ExecuteNonQueryAsync();
        }

        var reader = new StoredStateReader(databases);
        var all = await reader.InventoryAsync(false);
        Assert.Equal(ids.OrderBy(i => i, StringComparer.Ordinal), all.Select(s => s.Key).OrderBy(k => k, StringComparer.Ordinal));
        for (var i = 0; i < ids.Length; i++)
            Assert.Equal(i, (await reader.InventoryAsync(false, ids[i])).Single().State.Resource.Committed);
        Assert.Equal([("inventory", 1L)], await reader.LegacyNumericKeyRowsAsync());
    }
}
