using System.Text;
using System.Text.Json;
using CsCheck;
using Npgsql;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Batching;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>
/// The batched writer against a real PostgreSQL: per-row version checks inside one shared transaction, natural
/// batching under concurrency, "outcome unknown" for every waiter of a failed batch, no completion before the
/// commit, and one row per distinct string key. Each test has a database of its own (triggers, row locks).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class BatchedStateWriterTests(PostgresFixture fixture, ITestOutputHelper output)
{
    internal static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task One_stale_row_in_a_batch_of_32_fails_alone_and_the_other_31_commit_in_one_transaction()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var state = NewStateName();
        var keys = NewKeys(32);
        var blocker = NewKeys(1)[0];
        await Task.WhenAll(keys.Append(blocker).Select(k => writer.WriteAsync(state, k, Payload(k, 1), 0)));
        var stale = keys[Random.Shared.Next(keys.Length)];
        Assert.Equal(2, await writer.WriteAsync(state, stale, Payload(stale, 2), 1));

        // The flush loop is held on a locked row, so the 32 writes queue up and leave together.
        await using var locker = await LockRowsAsync(db, state, blocker);
        var held = writer.WriteAsync(state, blocker, Payload(blocker, 2), 1);
        await WaitForWriterLockWaitAsync(db);
        var batchesBefore = writer.CommittedBatches;
        var writes = keys.Select(k => (Key: k, Task: writer.WriteAsync(state, k, Payload(k, 2), 1))).ToList();
        await locker.DisposeAsync();

        Assert.Equal(2, await held.WaitAsync(Patience));
        foreach (var (key, task) in writes)
        {
            if (key == stale)
            {
                var conflict = await Assert.ThrowsAsync<StateVersionConflictException>(() => task.WaitAsync(Patience));
                Assert.Equal((state, stale, 1), (conflict.StateName, conflict.Key, conflict.ExpectedVersion));
            }
            else
            {
                Assert.Equal(2, await task.WaitAsync(Patience));
            }
        }

        Assert.Equal(2, writer.CommittedBatches - batchesBefore);
        Assert.Contains(32, writer.BatchSizes().Keys);
        // One transaction wrote the 31 rows: they all carry its id as xmin.
        var committed = keys.Where(k => k != stale).ToArray();
        var transactions = await ScalarAsync(db, "SELECT count(DISTINCT xmin::text) FROM twopc_grain_state WHERE state_name = @s AND grain_key = ANY(@k)",
            ("s", state), ("k", committed));
        output.WriteLine($"31 rows written by {transactions} transaction(s); batch sizes {Describe(writer.BatchSizes())}");
        Assert.Equal(1L, transactions);
        foreach (var key in committed)
            Assert.Equal(new StoredGrainState(2, Payload(key, 2)), await writer.ReadAsync(state, key), StoredEquality.Instance);
        Assert.Equal(new StoredGrainState(2, Payload(stale, 2)), await writer.ReadAsync(state, stale), StoredEquality.Instance);
    }

    [Fact]
    public async Task Concurrent_writers_form_batches()
    {
        const int Writers = 32;
        const int WritesEach = 25;
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var state = NewStateName();
        var keys = NewKeys(Writers);
        var xactBefore = await CommittedTransactionsAsync(db);

        // Each writer behaves like a grain: one write in flight, the next with the version the last returned.
        await Task.WhenAll(keys.Select(key => Task.Run(async () =>
        {
            var version = 0;
            for (var i = 1; i <= WritesEach; i++)
                version = await writer.WriteAsync(state, key, Payload(key, i), version);
            Assert.Equal(WritesEach, version);
        })));

        var sizes = writer.BatchSizes();
        // Backends report their statistics about a second after going idle: wait until the batches show.
        var xactDelta = 0L;
        for (var deadline = DateTime.UtcNow + Patience; DateTime.UtcNow < deadline && xactDelta < writer.CommittedBatches; await Task.Delay(250))
            xactDelta = await CommittedTransactionsAsync(db) - xactBefore;
        output.WriteLine($"{Writers} writers x {WritesEach} writes: {writer.CommittedBatches} batches; sizes (size: count) {Describe(sizes)}; " +
                         $"xact_commit of the database grew by {xactDelta} (this test's own statistics queries included)");
        Assert.InRange(xactDelta, writer.CommittedBatches, Writers * WritesEach - 1);
        Assert.Equal(Writers * WritesEach, sizes.Sum(s => s.Key * s.Value));
        Assert.Equal(Writers * WritesEach, writer.CommittedWrites);
        Assert.True(writer.CommittedBatches < Writers * WritesEach, "no two writes shared a batch");
        Assert.True(sizes.Keys.Max() > 1);
        foreach (var key in keys)
            Assert.Equal(new StoredGrainState(WritesEach, Payload(key, WritesEach)), await writer.ReadAsync(state, key), StoredEquality.Instance);
    }

    [Fact]
    public async Task Two_writers_on_the_same_rows_in_opposite_orders_never_deadlock()
    {
        // Two silos: each batch holds the same rows, queued in opposite orders. Rows are locked in key order
        // whatever the queue order, so one batch waits for the other instead of deadlocking (which would fail
        // a whole batch as "outcome unknown").
        var db = await NewDatabaseAsync();
        await using var first = new BatchedStateWriter(db);
        await using var second = new BatchedStateWriter(db);
        var state = NewStateName();
        var keys = NewKeys(24);
        await Task.WhenAll(keys.Select(k => first.WriteAsync(state, k, Payload(k, 0), 0)));
        // Enough other rows that the plan looks rows up in queue order through the key index (on a tiny table
        // it scans the heap, which locks in one physical order by luck).
        await ExecuteAsync(db, "INSERT INTO twopc_grain_state (state_name, grain_key, version, payload) " +
                               "SELECT 'filler', md5(i::text), 1, NULL FROM generate_series(1, 20000) AS i; ANALYZE twopc_grain_state");
        var versions = keys.ToDictionary(k => k, _ => 1);
        var conflicts = 0;
        for (var round = 1; round <= 20; round++)
        {
            var order = keys.OrderBy(_ => Random.Shared.Next()).ToArray();
            var writes = order.Select(k => (Key: k, Task: first.WriteAsync(state, k, Payload(k, round), versions[k])))
                .Concat(order.Reverse().Select(k => (Key: k, Task: second.WriteAsync(state, k, Payload(k, -round), versions[k])))).ToList();
            foreach (var (key, task) in writes)
            {
                try
                {
                    versions[key] = Math.Max(versions[key], await task.WaitAsync(Patience));
                }
                catch (StateVersionConflictException)
                {
                    conflicts++;
                }
            }
            // Exactly one of the two writes of each row won.
            foreach (var key in keys) Assert.Equal(round + 1, versions[key]);
        }
        output.WriteLine($"20 rounds x 24 rows x 2 writers: {conflicts} version conflicts, no deadlock; batch sizes {Describe(first.BatchSizes())} / {Describe(second.BatchSizes())}");
        Assert.Equal(20 * keys.Length, conflicts);
    }

    [Fact]
    public async Task A_connection_killed_mid_batch_fails_every_waiter_with_outcome_unknown_and_nothing_of_the_batch_is_written()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var state = NewStateName();
        var keys = NewKeys(32);
        var blocker = NewKeys(1)[0];
        await Task.WhenAll(keys.Append(blocker).Select(k => writer.WriteAsync(state, k, Payload(k, 1), 0)));

        // First hold the loop on the blocker so the 32 writes form one batch; then that batch waits on a row
        // of its own, locked by another connection, and its connection is killed.
        var lockedKey = keys[Random.Shared.Next(keys.Length)];
        await using var batchLock = await LockRowsAsync(db, state, lockedKey);
        await using (var blockerLock = await LockRowsAsync(db, state, blocker))
        {
            var held = writer.WriteAsync(state, blocker, Payload(blocker, 2), 1);
            await WaitForWriterLockWaitAsync(db);
            var writes = keys.Select(k => writer.WriteAsync(state, k, Payload(k, 2), 1)).ToList();
            await blockerLock.DisposeAsync();
            Assert.Equal(2, await held.WaitAsync(Patience));

            var pid = await WaitForWriterLockWaitAsync(db);
            Assert.Equal(true, await ScalarAsync(db, "SELECT pg_terminate_backend(@pid)", ("pid", pid)));
            foreach (var write in writes)
                await Assert.ThrowsAsync<StateWriteOutcomeUnknownException>(() => write.WaitAsync(Patience));
        }
        await batchLock.DisposeAsync();

        // Reloaded: the batch's transaction died with its connection, so every row is as before, and writing
        // again from the reloaded versions works.
        foreach (var key in keys)
        {
            var stored = await writer.ReadAsync(state, key);
            Assert.Equal(new StoredGrainState(1, Payload(key, 1)), stored, StoredEquality.Instance);
        }
        var again = await Task.WhenAll(keys.Select(k => writer.WriteAsync(state, k, Payload(k, 2), 1)));
        Assert.All(again, v => Assert.Equal(2, v));
    }

    [Fact]
    public async Task A_write_does_not_complete_before_its_transaction_has_committed()
    {
        var db = await NewDatabaseAsync();
        // A deferred trigger runs at commit, after the statement has produced its rows: holding it holds the commit.
        var lockId = Random.Shared.NextInt64(1, long.MaxValue);
        await ExecuteAsync(db, $"""
            CREATE FUNCTION hold_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock({lockId}); RETURN NULL; END $$;
            CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT OR UPDATE ON twopc_grain_state
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION hold_commit();
            """);
        await using var writer = new BatchedStateWriter(db);
        var state = NewStateName();
        var key = NewKeys(1)[0];

        await using var holder = new NpgsqlConnection(db);
        await holder.OpenAsync();
        await using (var hold = new NpgsqlCommand($"SELECT pg_advisory_lock({lockId})", holder)) await hold.ExecuteNonQueryAsync();
        var write = writer.WriteAsync(state, key, Payload(key, 1), 0);
        await WaitForWriterLockWaitAsync(db);
        await Task.Delay(200);

        Assert.False(write.IsCompleted, "the write completed while its commit was held");
        Assert.Null(await writer.ReadAsync(state, key));
        await using (var release = new NpgsqlCommand($"SELECT pg_advisory_unlock({lockId})", holder)) await release.ExecuteNonQueryAsync();
        Assert.Equal(1, await write.WaitAsync(Patience));
        Assert.Equal(new StoredGrainState(1, Payload(key, 1)), await writer.ReadAsync(state, key), StoredEquality.Instance);
    }

    [Fact]
    public async Task A_commit_that_fails_after_the_rows_were_returned_fails_every_waiter_and_writes_nothing()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var state = NewStateName();
        var keys = NewKeys(8);
        await Task.WhenAll(keys.Select(k => writer.WriteAsync(state, k, Payload(k, 1), 0)));
        // From now on every commit that changed a row fails, after the statement has returned its rows.
        await ExecuteAsync(db, """
            CREATE FUNCTION refuse_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'commit refused'; END $$;
            CREATE CONSTRAINT TRIGGER refuse_commit AFTER INSERT OR UPDATE ON twopc_grain_state
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_commit();
            """);

        var writes = keys.Select(k => writer.WriteAsync(state, k, Payload(k, 2), 1)).ToList();
        foreach (var write in writes)
        {
            var unknown = await Assert.ThrowsAsync<StateWriteOutcomeUnknownException>(() => write.WaitAsync(Patience));
            Assert.Contains("commit refused", unknown.Message);
        }
        foreach (var key in keys)
            Assert.Equal(new StoredGrainState(1, Payload(key, 1)), await writer.ReadAsync(state, key), StoredEquality.Instance);
    }

    [Fact]
    public async Task Generated_string_keys_each_keep_a_row_of_their_own()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        // Families Orleans' own provider would fold into one number (cafe, CAFE, 0cafe, ~cafe), plus any text.
        var family = Gen.String[Gen.Char["0123456789abcdefABCDEF"], 1, 12]
            .Select(h => new[] { h, h.ToLowerInvariant(), h.ToUpperInvariant(), "0" + h, "00" + h, "~" + h, h + "+x" });
        var keySets = Gen.Select(family, StoredGrainKeyTests.Keys.Where(IsStorableText).Array[1, 24],
            (f, more) => f.Concat(more).Distinct(StringComparer.Ordinal).ToArray());

        await keySets.SampleAsync(async keys =>
        {
            var state = NewStateName();
            var versions = await Task.WhenAll(keys.Select(k => writer.WriteAsync(state, k, Encoding.UTF8.GetBytes(k), 0)));
            Assert.All(versions, v => Assert.Equal(1, v));
            foreach (var key in keys)
                Assert.Equal(key, Encoding.UTF8.GetString((await writer.ReadAsync(state, key))!.Payload!));
            Assert.Equal((long)keys.Length, await ScalarAsync(db, "SELECT count(*) FROM twopc_grain_state WHERE state_name = @s", ("s", state)));
        }, iter: 30, threads: 1);
    }

    [Fact]
    public async Task Keys_PostgreSQL_text_cannot_hold_are_refused_before_they_can_fail_a_batch()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var state = NewStateName();
        var good = NewKeys(1)[0];
        foreach (var bad in new[] { good + "\0", good + "\ud800", "\udc00" + good, "" })
            Assert.Throws<ArgumentException>(() => { _ = writer.WriteAsync(state, bad, Payload(good, 1), 0); });
        Assert.Throws<ArgumentOutOfRangeException>(() => { _ = writer.WriteAsync(state, good, Payload(good, 1), -1); });

        Assert.Equal(1, await writer.WriteAsync(state, good, Payload(good, 1), 0));
        Assert.Equal(1L, await ScalarAsync(db, "SELECT count(*) FROM twopc_grain_state"));
    }

    [Fact]
    public async Task Clear_keeps_the_row_with_the_next_version_and_checks_the_version()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var state = NewStateName();
        var key = NewKeys(1)[0];

        Assert.Equal(0, await writer.ClearAsync(state, key, 0));
        Assert.Equal(1, await writer.WriteAsync(state, key, Payload(key, 1), 0));
        await Assert.ThrowsAsync<StateVersionConflictException>(() => writer.ClearAsync(state, key, 0));
        await Assert.ThrowsAsync<StateVersionConflictException>(() => writer.ClearAsync(state, key, 2));
        Assert.Equal(2, await writer.ClearAsync(state, key, 1));
        Assert.Equal(new StoredGrainState(2, null), await writer.ReadAsync(state, key), StoredEquality.Instance);
        // A stale activation that never saw the row cannot recreate it.
        await Assert.ThrowsAsync<StateVersionConflictException>(() => writer.WriteAsync(state, key, Payload(key, 9), 0));
        Assert.Equal(3, await writer.WriteAsync(state, key, Payload(key, 3), 2));
    }

    [Fact]
    public async Task The_state_reader_reads_rows_of_the_batched_table_under_their_exact_keys()
    {
        var db = await NewDatabaseAsync();
        var databases = new ServiceDatabases(db, db, db, db);
        await using var writer = new BatchedStateWriter(db);
        // Keys the ADO.NET mapping escapes with '~' are stored as given here and must be read back as given.
        // A letter first: eight hex digits can all be decimal, and then the lower-case id would be the same id.
        var hex = "A" + Convert.ToHexString(Guid.NewGuid().ToByteArray())[..7];
        var ids = new[] { hex, hex.ToLowerInvariant(), "0" + hex, "~" + hex, "~~" + hex, Guid.NewGuid().ToString("N"), "SKU-" + hex };
        for (var i = 0; i < ids.Length; i++)
        {
            var record = new ParticipantRecord<EscrowCounter, long> { Resource = new EscrowCounter { Exists = true, Committed = i, SuppliedTotal = i } };
            await writer.WriteAsync(StateNames.Inventory, ids[i], JsonSerializer.SerializeToUtf8Bytes(record, StateJson.Options), 0);
        }
        var cleared = "cleared-" + hex;
        await writer.WriteAsync(StateNames.Inventory, cleared, JsonSerializer.SerializeToUtf8Bytes(new ParticipantRecord<EscrowCounter, long>(), StateJson.Options), 0);
        await writer.ClearAsync(StateNames.Inventory, cleared, 1);

        var reader = new StoredStateReader(databases);
        var all = await reader.InventoryAsync(false);
        Assert.Equal(ids.Order(StringComparer.Ordinal), all.Select(s => s.Key).Order(StringComparer.Ordinal));
        for (var i = 0; i < ids.Length; i++)
        {
            var one = Assert.Single(await reader.InventoryAsync(false, ids[i]));
            Assert.Equal((ids[i], i, 1), (one.Key, (int)one.State.Resource.Committed, one.Version));
        }
        Assert.Empty(await reader.InventoryAsync(false, cleared));
        Assert.Empty(await reader.PaymentsAsync(false));
        Assert.False(await writer.HoldsAdoNetStateAsync());
    }

    [Fact]
    public async Task State_written_by_the_adonet_provider_is_detected()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        Assert.False(await writer.HoldsAdoNetStateAsync());
        // A cleared ADO.NET row (NULL payload) holds no state.
        await ExecuteAsync(db, "SELECT orleans_storage_write(1, 0, 1, 1, 'x', 'k', 's', NULL, NULL); SELECT orleans_storage_clear(1, 0, 1, 1, 'x', 'k', 's', 1)");
        Assert.False(await writer.HoldsAdoNetStateAsync());
        await ExecuteAsync(db, "SELECT orleans_storage_write(1, 0, 1, 1, 'x', 'k', 's', 2, '\\x7b7d'::bytea)");
        Assert.True(await writer.HoldsAdoNetStateAsync());
    }

    private async Task<string> NewDatabaseAsync() => await fixture.CreateDatabaseAsync("batched_" + Guid.NewGuid().ToString("N")[..12]);

    internal static string NewStateName() => "state-" + Guid.NewGuid().ToString("N")[..8];

    /// <summary>Distinct generated keys of mixed shapes (GUIDs, digits, hex, text).</summary>
    internal static string[] NewKeys(int count) =>
        Enumerable.Range(0, count).Select(i => (i % 4) switch
        {
            0 => Guid.NewGuid().ToString("N"),
            1 => Random.Shared.NextInt64(1, long.MaxValue).ToString(System.Globalization.CultureInfo.InvariantCulture),
            2 => Convert.ToHexString(Guid.NewGuid().ToByteArray()),
            _ => "k-" + Guid.NewGuid().ToString("D") + "-é",
        }).ToArray();

    private static byte[] Payload(string key, int generation) => Encoding.UTF8.GetBytes($"{{\"key\":{JsonSerializer.Serialize(key)},\"generation\":{generation}}}");

    internal static bool IsStorableText(string key) =>
        !key.Contains('\0') && !key.AsSpan().ContainsAnyInRange('\ud800', '\udfff') && key.Length > 0;

    private static string Describe(IReadOnlyDictionary<int, long> sizes) => string.Join(", ", sizes.Select(s => $"{s.Key}: {s.Value}"));

    /// <summary>A connection holding FOR UPDATE locks on the given rows until it is disposed (rolled back).</summary>
    internal static async Task<NpgsqlConnection> LockRowsAsync(string db, string state, params string[] keys)
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(db) { Pooling = false }.ConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("BEGIN; SELECT 1 FROM twopc_grain_state WHERE state_name = @s AND grain_key = ANY(@k) FOR UPDATE", connection);
        command.Parameters.AddWithValue("s", state);
        command.Parameters.AddWithValue("k", keys);
        await command.ExecuteNonQueryAsync();
        return connection;
    }

    /// <summary>Waits until the writer's backend waits on a lock; returns its pid.</summary>
    internal static async Task<int> WaitForWriterLockWaitAsync(string db)
    {
        var deadline = DateTime.UtcNow + Patience;
        while (DateTime.UtcNow < deadline)
        {
            if (await ScalarAsync(db, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = @app AND wait_event_type = 'Lock'",
                    ("app", BatchedStateWriter.ApplicationName)) is int pid)
                return pid;
            await Task.Delay(20);
        }
        throw new TimeoutException("the writer never waited on the lock");
    }

    private static async Task<long> CommittedTransactionsAsync(string db) =>
        (long)(await ScalarAsync(db, "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"))!;

    internal static async Task ExecuteAsync(string db, string sql)
    {
        await using var connection = new NpgsqlConnection(db);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    internal static async Task<object?> ScalarAsync(string db, string sql, params (string Name, object Value)[] args)
    {
        await using var connection = new NpgsqlConnection(db);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in args) command.Parameters.AddWithValue(name, value);
        return await command.ExecuteScalarAsync();
    }

    /// <summary>Compares payloads by content (records compare arrays by reference).</summary>
    private sealed class StoredEquality : IEqualityComparer<StoredGrainState?>
    {
        public static readonly StoredEquality Instance = new();

        public bool Equals(StoredGrainState? x, StoredGrainState? y) =>
            x is null || y is null ? x is null && y is null
            : x.Version == y.Version && (x.Payload is null ? y.Payload is null : y.Payload is not null && x.Payload.AsSpan().SequenceEqual(y.Payload));

        public int GetHashCode(StoredGrainState? obj) => obj?.Version ?? 0;
    }
}
