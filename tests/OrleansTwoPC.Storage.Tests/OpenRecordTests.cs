using System.Text.Json;
using Npgsql;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Storage.Batching;
using OrleansTwoPC.Storage.Records;
using static OrleansTwoPC.Storage.Tests.BatchedStateWriterTests;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>
/// The open flag of batched rows (sql/070): the recovery sweep finds the unfinished coordinator records through a
/// partial index instead of reading every record ever written (they are kept for resubmissions), and a row written
/// without the flag (by an older silo) is still found by its payload.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class OpenRecordTests(PostgresFixture fixture)
{
    private static readonly Func<CoordinatorRecord, byte[]> Serialize = r => JsonSerializer.SerializeToUtf8Bytes(r, StateJson.Options);

    private static CoordinatorRecord Decided(string tx, bool completed) => new()
    {
        TransactionId = tx,
        Decision = Decision.Commit,
        StartedAt = DateTimeOffset.UtcNow,
        DecidedAt = DateTimeOffset.UtcNow,
        CompletedAt = completed ? DateTimeOffset.UtcNow : null,
    };

    private async Task<string> NewDatabaseAsync() => await fixture.CreateDatabaseAsync("open_" + Guid.NewGuid().ToString("N")[..12]);

    private static async Task<bool?> OpenOf(string db, string key) =>
        await ScalarAsync(db, "SELECT open FROM twopc_grain_state WHERE state_name = @s AND grain_key = @k", ("s", StateNames.Coordinator), ("k", key)) is bool open ? open : null;

    [Fact]
    public async Task A_coordinator_record_is_open_until_its_transaction_completes_and_the_sweep_reads_only_the_open_ones()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var store = new BatchedStateStore(writer);
        var keys = NewKeys(6).Select(k => "tx-" + k).ToArray();
        var versions = new Dictionary<string, int>();
        foreach (var key in keys) versions[key] = await store.WriteAsync(StateNames.Coordinator, key, Decided(key, completed: false), 0, new object(), Serialize);
        foreach (var key in keys) Assert.True(await OpenOf(db, key));

        // Half complete; one of those is cleared afterwards.
        foreach (var key in keys[..3]) versions[key] = await store.WriteAsync(StateNames.Coordinator, key, Decided(key, completed: true), versions[key], new object(), Serialize);
        await writer.ClearAsync(StateNames.Coordinator, keys[0], versions[keys[0]]);
        foreach (var key in keys[..3]) Assert.False(await OpenOf(db, key));

        var reader = new StoredStateReader(new ServiceDatabases(db, db, db, db));
        Assert.Equal(keys[3..].Order(StringComparer.Ordinal), (await reader.CoordinatorsAsync(unfinishedOnly: true)).Select(c => c.Key).Order(StringComparer.Ordinal));
        Assert.Equal(5, (await reader.CoordinatorsAsync(unfinishedOnly: false)).Count);

        // Rows without the flag, as an older silo writes them: judged by their payload.
        await ScalarAsync(db, "UPDATE twopc_grain_state SET open = NULL WHERE grain_key = ANY(@k)", ("k", new[] { keys[1], keys[4] }));
        Assert.Equal(keys[3..].Order(StringComparer.Ordinal), (await reader.CoordinatorsAsync(unfinishedOnly: true)).Select(c => c.Key).Order(StringComparer.Ordinal));
        // The next write sets it again.
        await store.WriteAsync(StateNames.Coordinator, keys[4], Decided(keys[4], completed: false), versions[keys[4]], new object(), Serialize);
        Assert.True(await OpenOf(db, keys[4]));
    }

    [Fact]
    public async Task The_schema_backfills_rows_without_the_flag_from_their_payload()
    {
        var db = await NewDatabaseAsync();
        var (open, done) = ("tx-" + NewKeys(1)[0], "tx-" + NewKeys(1)[0]);
        await ScalarAsync(db, "INSERT INTO twopc_grain_state (state_name, grain_key, version, payload) VALUES (@s, @k1, 1, @p1), (@s, @k2, 1, @p2)",
            ("s", StateNames.Coordinator), ("k1", open), ("p1", Serialize(Decided(open, false))), ("k2", done), ("p2", Serialize(Decided(done, true))));
        Assert.Null(await OpenOf(db, open));

        await SchemaApplier.ApplyAsync(db);
        Assert.True(await OpenOf(db, open));
        Assert.False(await OpenOf(db, done));
    }

    [Fact]
    public async Task Among_thousands_of_completed_records_the_unfinished_ones_are_found_through_the_index()
    {
        var db = await NewDatabaseAsync();
        // 20,000 completed records and 3 open ones, then fresh statistics, as the sweep meets them after a while.
        var completed = Serialize(Decided("tx", completed: true));
        await ScalarAsync(db, "INSERT INTO twopc_grain_state (state_name, grain_key, version, payload, open) SELECT @s, 'done-' || n, 1, @p, false FROM generate_series(1, 20000) AS n",
            ("s", StateNames.Coordinator), ("p", completed));
        await using var writer = new BatchedStateWriter(db);
        var store = new BatchedStateStore(writer);
        var open = NewKeys(3).Select(k => "tx-" + k).ToArray();
        foreach (var key in open) await store.WriteAsync(StateNames.Coordinator, key, Decided(key, completed: false), 0, new object(), Serialize);
        await ScalarAsync(db, "ANALYZE twopc_grain_state");

        var reader = new StoredStateReader(new ServiceDatabases(db, db, db, db));
        Assert.Equal(open.Order(StringComparer.Ordinal), (await reader.CoordinatorsAsync(unfinishedOnly: true)).Select(c => c.Key).Order(StringComparer.Ordinal));

        // The batched half of the reader's query, as it filters: no sequential scan of the table.
        await using var connection = new NpgsqlConnection(db);
        await connection.OpenAsync();
        await using var explain = new NpgsqlCommand(
            "EXPLAIN SELECT s.grain_key FROM twopc_grain_state AS s WHERE s.state_name = @s AND s.payload IS NOT NULL " +
            "AND (s.open OR (s.open IS NULL AND position('\"CompletedAt\":null'::bytea IN s.payload) > 0))", connection);
        explain.Parameters.AddWithValue("s", StateNames.Coordinator);
        var plan = new List<string>();
        await using (var rows = await explain.ExecuteReaderAsync())
            while (await rows.ReadAsync()) plan.Add(rows.GetString(0));
        var text = string.Join("\n", plan);
        Assert.Contains("ix_twopc_grain_state_open", text);
        Assert.DoesNotContain("Seq Scan", text);
    }
}
