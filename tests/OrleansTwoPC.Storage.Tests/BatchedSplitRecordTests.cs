using System.Text.Json;
using CsCheck;
using Npgsql;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Batching;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;
using static OrleansTwoPC.Storage.Tests.BatchedStateWriterTests;

namespace OrleansTwoPC.Storage.Tests;

using EscrowRecord = ParticipantRecord<EscrowCounter, long>;

/// <summary>
/// Participant records on the batched storage as a head row plus one entry row per prepared transaction and tombstone
/// (<see cref="BatchedStateStore"/>, <see cref="ParticipantRecordLayout{TResource,TWork}"/>, sql/060): a write sends the
/// head and only the changed entries, entries go with their head's version check and transaction, and every reader
/// joins them back into the exact record.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class BatchedSplitRecordTests(PostgresFixture fixture, ITestOutputHelper output)
{
    private static readonly TimeSpan Retention = TimeSpan.FromMinutes(1);
    private static readonly TimeSpan PrepareWindow = TimeSpan.FromSeconds(5);
    private static readonly Func<EscrowRecord, byte[]> Unsplit = _ => throw new InvalidOperationException("a participant record is stored split");

    // Times from a small set, some the same instant in another offset, so records often share values and differ
    // only in how an instant is written.
    private static readonly Gen<DateTimeOffset> Times = Gen.Select(Gen.Int[0, 3], Gen.Int[0, 2].Select(i => new[] { 0, 90, -300 }[i]),
        (seconds, minutes) => DateTimeOffset.UnixEpoch.AddYears(56).AddSeconds(seconds).ToOffset(TimeSpan.FromMinutes(minutes)));

    private static readonly Gen<PreparedTransaction<long>> PreparedValues = Gen.Select(Gen.Long[1, 3], StoredGrainKeyTests.Keys.Where(IsStorableText), Times, Times,
        (work, coordinator, at, deadline) => new PreparedTransaction<long> { Work = work, Coordinator = coordinator, PreparedAt = at, Deadline = deadline });

    private static readonly Gen<DecidedTransaction> DecidedValues = Gen.Select(Gen.Bool.Select(commit => commit ? Decision.Commit : Decision.Abort), Times, Gen.Bool, Times, Times,
        (outcome, at, hasDeadline, deadline, keepUntil) => new DecidedTransaction { Outcome = outcome, DecidedAt = at, Deadline = hasDeadline ? deadline : null, KeepUntil = keepUntil });

    /// <summary>
    /// Successive records of one participant over a pool of generated transaction ids: each record holds every id
    /// absent, prepared or decided, in one of two values per id (or the second tombstone's instant in another offset).
    /// </summary>
    private static readonly Gen<EscrowRecord[]> Histories =
        from ids in StoredGrainKeyTests.Keys.Where(IsStorableText).Select(k => "tx-" + k).Array[1, 10]
        from prepared in PreparedValues.Array[2].Array[ids.Length]
        from decided in DecidedValues.Array[2].Array[ids.Length]
        from records in Gen.Select(Gen.Long[0, 9], Gen.Int[0, 6].Array[ids.Length], (committed, slots) => Record(committed, ids, slots, prepared, decided)).Array[1, 6]
        select records;

    [Fact]
    public void A_split_changes_exactly_the_entries_that_differ_and_joins_back_into_the_record()
    {
        var layout = StateLayouts.Of<EscrowRecord>()!;
        Histories.Sample(history =>
        {
            var rows = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            var stored = layout.Remember(rows);
            foreach (var record in history)
            {
                var (split, expected) = SplitAndApply(layout, record, stored, rows);
                Assert.Equal(expected.Count, stored.Count);
                Assert.Empty(layout.Split(record, stored).Changes);
                Assert.Empty(layout.Split(record, layout.Remember(rows)).Changes);
                Assert.True(split.Head.AsSpan().IndexOf("\"Prepared\""u8) < 0 && split.Head.AsSpan().IndexOf("\"Decided\""u8) < 0, "the head holds a map");
                Assert.Equal(Canonical(record), Canonical(JsonSerializer.Deserialize<EscrowRecord>(StateLayouts.Join(split.Head, rows), StateJson.Options)!));
            }
        });
    }

    /// <summary>A machine step of <see cref="Successive_snapshots_write_only_the_tombstones_they_name"/>.</summary>
    private enum Step { Prepare, Commit, Rollback, Later, CopyNotWritten, Write }

    [Fact]
    public void Successive_snapshots_write_only_the_tombstones_they_name_and_leave_the_rows_equal_to_the_record()
    {
        var layout = StateLayouts.Of<EscrowRecord>()!;
        var steps = Gen.Frequency((4, Gen.Const(Step.Prepare)), (3, Gen.Const(Step.Commit)), (2, Gen.Const(Step.Rollback)),
            (2, Gen.Const(Step.Later)), (1, Gen.Const(Step.CopyNotWritten)), (3, Gen.Const(Step.Write)));
        Gen.Select(steps.Array[1, 80], Gen.Int[0, 5].Array[80], (s, picks) => (s, picks)).Sample(run =>
        {
            var ids = Enumerable.Range(0, 6).Select(_ => NewTransactionId()).ToArray();
            var machine = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("out of stock"), null, TimeSpan.FromSeconds(2));
            machine.Record.Resource = new EscrowCounter { Exists = true, Committed = 1_000, SuppliedTotal = 1_000 };
            var now = DateTimeOffset.UnixEpoch.AddYears(56);
            var rows = new Dictionary<string, byte[]>(StringComparer.Ordinal);
            var stored = layout.Remember(rows);
            for (var i = 0; i < run.s.Length; i++)
            {
                var tx = ids[run.picks[i]];
                switch (run.s[i])
                {
                    case Step.Prepare: machine.Prepare(tx, tx, 1, now + TimeSpan.FromSeconds(1), now); break;
                    case Step.Commit: machine.Commit(tx, now); break;
                    case Step.Rollback: machine.Rollback(tx, now); break;
                    case Step.Later: now += TimeSpan.FromSeconds(1); break;
                    // A copy that is never written: the next one names changes since it, not since the rows, so all are compared.
                    case Step.CopyNotWritten: machine.CopyRecord(); break;
                    case Step.Write:
                        SplitAndApply(layout, machine.CopyRecord(), stored, rows);
                        break;
                }
            }
        });
    }

    [Fact]
    public async Task A_hot_participant_with_thousands_of_tombstones_writes_a_head_under_1_KB_and_only_its_changed_entries()
    {
        const int Tombstones = 3000;
        const int Steps = 20;
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var store = new BatchedStateStore(writer);
        var sku = NewKeys(1)[0];
        var owner = new object();
        var machine = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("out of stock"), null, Retention);
        machine.Record.Resource = new EscrowCounter { Exists = true, Committed = 1_000_000, SuppliedTotal = 1_000_000 };
        // Decided 10 ms apart, as at 100 transactions/s; steps 10 ms apart later let about one expire per write.
        var start = DateTimeOffset.UtcNow;
        var now = start;
        for (var i = 0; i < Tombstones; i++, now += TimeSpan.FromMilliseconds(10))
        {
            var tx = NewTransactionId();
            Assert.Equal(Vote.Yes, machine.Prepare(tx, tx, 1, now + PrepareWindow, now).Vote);
            Assert.Equal(DecisionCase.Applied, machine.Commit(tx, now).Case);
        }
        var written = machine.CopyRecord();
        var version = await store.WriteAsync(StateNames.Inventory, sku, written, 0, owner, Unsplit);
        Assert.Equal((long)Tombstones, await EntryRowsAsync(db, StateNames.Inventory, sku));
        var whole = JsonSerializer.SerializeToUtf8Bytes(written, StateJson.Options).Length;

        now = start + PrepareWindow + Retention;
        var largestSent = 0L;
        var largestHead = 0L;
        var expired = 0;
        for (var step = 0; step < Steps; step++)
        {
            var tx = NewTransactionId();
            Assert.Equal(Vote.Yes, machine.Prepare(tx, tx, 1, now + PrepareWindow, now).Vote);
            await WriteAndMeasure();
            now += TimeSpan.FromMilliseconds(10);
            Assert.True(step % 3 == 0 ? machine.Rollback(tx, now).Case == DecisionCase.Released : machine.Commit(tx, now).Case == DecisionCase.Applied);
            await WriteAndMeasure();
            now += TimeSpan.FromMilliseconds(10);
        }

        output.WriteLine($"whole record {whole} B ({machine.Record.Decided.Count} tombstones); per write: head at most {largestHead} B, " +
                         $"at most {largestSent} B of state sent, one statement; {expired} tombstones expired on the way");
        Assert.InRange(largestHead, 1, 1023);
        Assert.InRange(largestSent, 1, 1023);
        Assert.True(expired > 0, "no tombstone expired, so no delete was tested");
        Assert.Equal(0, store.EntryReads);
        var fresh = await store.ReadAsync<EscrowRecord>(StateNames.Inventory, sku, new object());
        Assert.Equal(Canonical(machine.Record), Canonical(JsonSerializer.Deserialize<EscrowRecord>(fresh!.Payload!, StateJson.Options)!));
        var read = Assert.Single(await new StoredStateReader(new ServiceDatabases(db, db, db, db)).InventoryAsync(false, sku));
        Assert.Equal((Canonical(machine.Record), version), (Canonical(read.State), read.Version));

        async Task WriteAndMeasure()
        {
            var record = machine.CopyRecord();
            var after = ExpectedRows(record).Keys.ToHashSet(StringComparer.Ordinal);
            var before = ExpectedRows(written).Keys.ToHashSet(StringComparer.Ordinal);
            var upserted = after.Except(before).Count();
            var changes = upserted + before.Except(after).Count();
            expired += written.Decided.Keys.Count(k => !record.Decided.ContainsKey(k));
            var (bytes, entries, batches) = (writer.SentStateBytes, writer.SentEntryChanges, writer.CommittedBatches);
            version = await store.WriteAsync(StateNames.Inventory, sku, record, version, owner, Unsplit);
            written = record;
            Assert.Equal(((long)changes, 1L), (writer.SentEntryChanges - entries, writer.CommittedBatches - batches));
            largestSent = Math.Max(largestSent, writer.SentStateBytes - bytes);
            var head = (int)(await ScalarAsync(db, "SELECT octet_length(payload) FROM twopc_grain_state WHERE state_name = @s AND grain_key = @k", ("s", StateNames.Inventory), ("k", sku)))!;
            largestHead = Math.Max(largestHead, head);
            // Entry rows the write's transaction inserted or updated: exactly the new ones.
            Assert.Equal((long)upserted, await ScalarAsync(db,
                "SELECT count(*) FROM twopc_state_entry AS e JOIN twopc_grain_state AS s USING (state_name, grain_key) WHERE s.state_name = @s AND s.grain_key = @k AND e.xmin = s.xmin",
                ("s", StateNames.Inventory), ("k", sku)));
            Assert.Equal((long)(record.Prepared.Count + record.Decided.Count), await EntryRowsAsync(db, StateNames.Inventory, sku));
        }
    }

    [Fact]
    public async Task A_version_conflict_writes_none_of_that_grains_entries_while_its_31_neighbours_commit_theirs_in_one_transaction()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var store = new BatchedStateStore(writer);
        var state = NewStateName();
        var keys = NewKeys(32);
        var blocker = NewKeys(1)[0];
        var owners = keys.ToDictionary(k => k, _ => new object());
        var records = keys.ToDictionary(k => k, _ => RecordWithTombstones(4));
        await Task.WhenAll(keys.Select(k => store.WriteAsync(state, k, records[k], 0, owners[k], Unsplit)));
        await writer.WriteAsync(state, blocker, Payload(), 0);
        // Another activation writes one grain first: the first owner's next write of it is stale.
        var stale = keys[Random.Shared.Next(keys.Length)];
        var other = RecordWithTombstones(2);
        Assert.Equal(2, await store.WriteAsync(state, stale, other, 1, new object(), Unsplit));

        await using (var locker = await LockRowsAsync(db, state, blocker))
        {
            var held = writer.WriteAsync(state, blocker, Payload(), 1);
            await WaitForWriterLockWaitAsync(db);
            var next = keys.ToDictionary(k => k, k => Evolve(records[k]));
            var writes = keys.Select(k => (Key: k, Task: store.WriteAsync(state, k, next[k], 1, owners[k], Unsplit))).ToList();
            await locker.DisposeAsync();
            Assert.Equal(2, await held.WaitAsync(Patience));
            foreach (var (key, task) in writes)
            {
                if (key == stale) await Assert.ThrowsAsync<StateVersionConflictException>(() => task.WaitAsync(Patience));
                else Assert.Equal(2, await task.WaitAsync(Patience));
            }
            records = next;
        }

        records[stale] = other;
        foreach (var key in keys)
            Assert.Equal(Describe(ExpectedRows(records[key])), Describe(await EntryRowsOfAsync(db, state, key)));
        var transactions = await ScalarAsync(db,
            "SELECT count(DISTINCT x) FROM (SELECT xmin::text AS x FROM twopc_grain_state WHERE state_name = @s AND grain_key = ANY(@k) " +
            "UNION ALL SELECT xmin::text FROM twopc_state_entry WHERE state_name = @s AND grain_key = ANY(@k) AND entry_key LIKE 'p:%') AS t",
            ("s", state), ("k", keys.Where(k => k != stale).ToArray()));
        Assert.Equal(1L, transactions);
    }

    [Fact]
    public async Task Two_writers_splitting_the_same_records_in_opposite_orders_never_deadlock_and_the_winner_alone_writes_entries()
    {
        // As BatchedStateWriterTests' test of plain rows, with entry rows: they are only touched under their head's
        // lock, so they add no lock order that could deadlock (which would fail whole batches as "outcome unknown").
        var db = await NewDatabaseAsync();
        await using var first = new BatchedStateWriter(db);
        await using var second = new BatchedStateWriter(db);
        var stores = new[] { new BatchedStateStore(first), new BatchedStateStore(second) };
        var state = NewStateName();
        var keys = NewKeys(24);
        var owners = stores.Select(_ => keys.ToDictionary(k => k, _ => new object())).ToArray();
        var records = keys.ToDictionary(k => k, _ => RecordWithTombstones(3));
        await Task.WhenAll(keys.Select(k => stores[0].WriteAsync(state, k, records[k], 0, owners[0][k], Unsplit)));
        await ExecuteAsync(db, "INSERT INTO twopc_grain_state (state_name, grain_key, version, payload) " +
                               "SELECT 'filler', md5(i::text), 1, NULL FROM generate_series(1, 20000) AS i; ANALYZE twopc_grain_state");
        var versions = keys.ToDictionary(k => k, _ => 1);
        var conflicts = 0;
        for (var round = 1; round <= 10; round++)
        {
            var order = keys.OrderBy(_ => Random.Shared.Next()).ToArray();
            var writes = new[] { order, order.Reverse().ToArray() }.SelectMany((queue, w) => queue.Select(k =>
            {
                var record = Evolve(records[k]);
                return (Key: k, Record: record, Task: stores[w].WriteAsync(state, k, record, versions[k], owners[w][k], Unsplit));
            })).ToList();
            foreach (var (key, record, task) in writes)
            {
                try
                {
                    versions[key] = await task.WaitAsync(Patience);
                    records[key] = record;
                }
                catch (StateVersionConflictException)
                {
                    conflicts++;
                }
            }
            foreach (var key in keys) Assert.Equal(round + 1, versions[key]);
        }
        output.WriteLine($"10 rounds x 24 split records x 2 writers: {conflicts} version conflicts, no deadlock; {stores.Sum(s => s.EntryReads)} entry reads by the losers");
        Assert.Equal(10 * keys.Length, conflicts);
        foreach (var key in keys)
            Assert.Equal(Describe(ExpectedRows(records[key])), Describe(await EntryRowsOfAsync(db, state, key)));
    }

    [Fact]
    public async Task A_connection_killed_mid_batch_writes_no_head_and_no_entry_and_the_store_writes_on_from_what_it_knew()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var store = new BatchedStateStore(writer);
        var state = NewStateName();
        var keys = NewKeys(16);
        var owners = keys.ToDictionary(k => k, _ => new object());
        var records = keys.ToDictionary(k => k, _ => RecordWithTombstones(6));
        await Task.WhenAll(keys.Select(k => store.WriteAsync(state, k, records[k], 0, owners[k], Unsplit)));
        var before = await AllEntryRowsAsync(db, state);

        // A blocker row first holds the writer's loop, so that the 16 writes form one batch (a write alone is sent
        // at once); that batch then waits on a row of its own, locked by another connection, and is killed.
        var blockerState = NewStateName();
        var blocker = NewKeys(1)[0];
        await writer.WriteAsync(blockerState, blocker, "{}"u8.ToArray(), 0);
        var next = keys.ToDictionary(k => k, k => Evolve(records[k]));
        await using (var locker = await LockRowsAsync(db, state, keys[Random.Shared.Next(keys.Length)]))
        {
            Task<int> held;
            List<Task<int>> writes;
            await using (var blockerLock = await LockRowsAsync(db, blockerState, blocker))
            {
                held = writer.WriteAsync(blockerState, blocker, "{}"u8.ToArray(), 1);
                await WaitForWriterLockWaitAsync(db);
                writes = keys.Select(k => store.WriteAsync(state, k, next[k], 1, owners[k], Unsplit)).ToList();
            }
            Assert.Equal(2, await held.WaitAsync(Patience));
            var pid = await WaitForWriterLockWaitAsync(db);
            Assert.Equal(true, await ScalarAsync(db, "SELECT pg_terminate_backend(@pid)", ("pid", pid)));
            foreach (var write in writes)
                await Assert.ThrowsAsync<StateWriteOutcomeUnknownException>(() => write.WaitAsync(Patience));
        }

        Assert.Equal(before, await AllEntryRowsAsync(db, state));
        Assert.Equal((long)keys.Length, (long)(await ScalarAsync(db, "SELECT count(*) FROM twopc_grain_state WHERE state_name = @s AND version = 1", ("s", state)))!);
        // What each owner knew of version 1 is still exact: writing on from it needs no read and stores the records.
        var again = await Task.WhenAll(keys.Select(k => store.WriteAsync(state, k, next[k], 1, owners[k], Unsplit)));
        Assert.All(again, v => Assert.Equal(2, v));
        Assert.Equal(0, store.EntryReads);
        foreach (var key in keys)
            Assert.Equal(Describe(ExpectedRows(next[key])), Describe(await EntryRowsOfAsync(db, state, key)));
    }

    [Fact]
    public async Task A_commit_refused_because_of_an_entry_row_writes_no_head_either()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var store = new BatchedStateStore(writer);
        var state = NewStateName();
        var keys = NewKeys(8);
        var owners = keys.ToDictionary(k => k, _ => new object());
        var records = keys.ToDictionary(k => k, _ => RecordWithTombstones(3));
        await Task.WhenAll(keys.Select(k => store.WriteAsync(state, k, records[k], 0, owners[k], Unsplit)));
        var before = await AllEntryRowsAsync(db, state);
        await ExecuteAsync(db, """
            CREATE FUNCTION refuse_entry() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'entry refused'; END $$;
            CREATE CONSTRAINT TRIGGER refuse_entry AFTER INSERT OR UPDATE OR DELETE ON twopc_state_entry
                DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_entry();
            """);

        var writes = keys.Select(k => store.WriteAsync(state, k, Evolve(records[k]), 1, owners[k], Unsplit)).ToList();
        foreach (var write in writes)
            Assert.Contains("entry refused", (await Assert.ThrowsAsync<StateWriteOutcomeUnknownException>(() => write.WaitAsync(Patience))).Message);
        Assert.Equal(before, await AllEntryRowsAsync(db, state));
        Assert.Equal((long)keys.Length, (long)(await ScalarAsync(db, "SELECT count(*) FROM twopc_grain_state WHERE state_name = @s AND version = 1", ("s", state)))!);
    }

    [Fact]
    public async Task Generated_histories_read_back_as_the_exact_records_through_the_store_and_the_state_reader()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var store = new BatchedStateStore(writer);
        var reader = new StoredStateReader(new ServiceDatabases(db, db, db, db));
        var fallbackReads = 0L;
        await Gen.Select(StoredGrainKeyTests.Keys.Where(IsStorableText), Histories, Gen.Bool.Array[6]).SampleAsync(async sample =>
        {
            var (key, history, freshOwner) = sample;
            key = key + "-" + Guid.NewGuid().ToString("N")[..6];
            var owner = new object();
            var version = 0;
            for (var i = 0; i < history.Length; i++)
            {
                var record = history[i];
                // A new state object (another activation, a migration) does not know the entries: the store reads them.
                if (freshOwner[i] && version > 0)
                {
                    owner = new object();
                    fallbackReads++;
                }
                version = await store.WriteAsync(StateNames.Inventory, key, record, version, owner, Unsplit);

                Assert.Equal(Describe(ExpectedRows(record)), Describe(await EntryRowsOfAsync(db, StateNames.Inventory, key)));
                var fresh = await store.ReadAsync<EscrowRecord>(StateNames.Inventory, key, new object());
                Assert.Equal((Canonical(record), version), (Canonical(JsonSerializer.Deserialize<EscrowRecord>(fresh!.Payload!, StateJson.Options)!), fresh.Version));
                Assert.Equal(Canonical(record), Canonical(Assert.Single(await reader.InventoryAsync(false, key)).State));
                Assert.Equal(record.Prepared.Count > 0, (await reader.InventoryAsync(true, key)).Count == 1);
                foreach (var tx in history.SelectMany(r => r.Prepared.Keys.Concat(r.Decided.Keys)).Distinct().Take(3))
                    Assert.Equal(record.Prepared.ContainsKey(tx) || record.Decided.ContainsKey(tx),
                        (await reader.ParticipantsMentioningAsync(tx, ParticipantKind.Inventory)).Any(p => p.Key == key));
            }
        }, iter: 25, threads: 1);
        Assert.Equal(fallbackReads, store.EntryReads);
    }

    [Fact]
    public async Task A_shipment_record_is_split_and_joined_like_the_escrow_ones()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var store = new BatchedStateStore(writer);
        var order = NewKeys(1)[0];
        var tx = "tx-" + order;
        var now = DateTimeOffset.UtcNow;
        var record = new ParticipantRecord<ShipmentRecord, ShipmentDetails>();
        record.Prepared[tx] = new PreparedTransaction<ShipmentDetails>
        {
            Work = new ShipmentDetails { OrderId = order, Address = NewKeys(1)[0], Items = NewKeys(3).Select((sku, i) => new ShipmentItem { Sku = sku, Quantity = i + 1 }).ToList() },
            Coordinator = tx,
            PreparedAt = now,
            Deadline = now + PrepareWindow,
        };
        Assert.Equal(1, await store.WriteAsync(StateNames.Shipment, order, record, 0, new object(), _ => throw new InvalidOperationException("split")));

        var read = Assert.Single(await new StoredStateReader(new ServiceDatabases(db, db, db, db)).ShipmentsAsync(true, order));
        Assert.Equal(JsonSerializer.Serialize(record, StateJson.Options), JsonSerializer.Serialize(read.State, StateJson.Options));
        Assert.Equal(new[] { StateLayouts.PreparedPrefix + tx }, (await EntryRowsOfAsync(db, StateNames.Shipment, order)).Keys);
    }

    [Fact]
    public async Task Clear_drops_the_entries_keeps_the_row_with_the_next_version_and_a_later_write_starts_afresh()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var store = new BatchedStateStore(writer);
        var key = NewKeys(1)[0];
        var owner = new object();
        var record = RecordWithTombstones(5);
        Assert.Equal(1, await store.WriteAsync(StateNames.Payment, key, record, 0, owner, Unsplit));
        await Assert.ThrowsAsync<StateVersionConflictException>(() => store.ClearAsync<EscrowRecord>(StateNames.Payment, key, 2, owner));
        Assert.Equal((long)(record.Prepared.Count + record.Decided.Count), await EntryRowsAsync(db, StateNames.Payment, key));

        Assert.Equal(2, await store.ClearAsync<EscrowRecord>(StateNames.Payment, key, 1, owner));
        Assert.Equal(0L, await EntryRowsAsync(db, StateNames.Payment, key));
        var cleared = await store.ReadAsync<EscrowRecord>(StateNames.Payment, key, owner);
        Assert.Equal((2, true, 0), (cleared!.Version, cleared.Payload is null, cleared.Entries.Count));
        Assert.Empty(await new StoredStateReader(new ServiceDatabases(db, db, db, db)).PaymentsAsync(false, key));

        Assert.Equal(3, await store.WriteAsync(StateNames.Payment, key, record, 2, owner, Unsplit));
        Assert.Equal(Describe(ExpectedRows(record)), Describe(await EntryRowsOfAsync(db, StateNames.Payment, key)));
        Assert.Equal(0, store.EntryReads);
    }

    [Fact]
    public async Task A_record_stored_in_one_row_before_the_split_is_read_whole_and_split_by_its_next_write()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var store = new BatchedStateStore(writer);
        var reader = new StoredStateReader(new ServiceDatabases(db, db, db, db));
        var key = NewKeys(1)[0];
        var record = RecordWithTombstones(4);
        var open = NewTransactionId();
        record.Prepared[open] = new PreparedTransaction<long> { Work = 2, Coordinator = open, PreparedAt = DateTimeOffset.UtcNow, Deadline = DateTimeOffset.UtcNow + PrepareWindow };
        var oneRow = JsonSerializer.SerializeToUtf8Bytes(record, StateJson.Options);
        Assert.Equal(1, await writer.WriteAsync(StateNames.Inventory, key, oneRow, 0));

        var owner = new object();
        await AssertReadWhole();
        Assert.Equal(0L, await EntryRowsAsync(db, StateNames.Inventory, key));
        Assert.Equal(2, await store.WriteAsync(StateNames.Inventory, key, record, 1, owner, Unsplit));
        Assert.Equal(Describe(ExpectedRows(record)), Describe(await EntryRowsOfAsync(db, StateNames.Inventory, key)));
        var head = (int)(await ScalarAsync(db, "SELECT octet_length(payload) FROM twopc_grain_state WHERE state_name = @s AND grain_key = @k", ("s", StateNames.Inventory), ("k", key)))!;
        output.WriteLine($"one row {oneRow.Length} B; split: head {head} B and {record.Prepared.Count + record.Decided.Count} entry rows");
        Assert.True(head < oneRow.Length / 2, $"head {head} B");
        await AssertReadWhole();

        async Task AssertReadWhole()
        {
            var fromStore = await store.ReadAsync<EscrowRecord>(StateNames.Inventory, key, owner);
            Assert.Equal(Canonical(record), Canonical(JsonSerializer.Deserialize<EscrowRecord>(fromStore!.Payload!, StateJson.Options)!));
            Assert.Equal(Canonical(record), Canonical(Assert.Single(await reader.InventoryAsync(true, key)).State));
            Assert.Contains(key, (await reader.ParticipantsMentioningAsync(open, ParticipantKind.Inventory)).Select(p => p.Key));
        }
    }

    [Fact]
    public async Task Entry_keys_PostgreSQL_text_cannot_hold_or_repeated_are_refused_before_they_can_fail_a_batch()
    {
        var db = await NewDatabaseAsync();
        await using var writer = new BatchedStateWriter(db);
        var state = NewStateName();
        var key = NewKeys(1)[0];
        var entry = NewKeys(1)[0];
        foreach (var bad in new[] { entry + "\0", entry + "\ud800", "" })
            Assert.Throws<ArgumentException>(() => { _ = writer.WriteAsync(state, key, Payload(), 0, [new StateEntryChange(bad, Payload())]); });
        Assert.Throws<ArgumentException>(() => { _ = writer.WriteAsync(state, key, Payload(), 0, [new StateEntryChange(entry, Payload()), new StateEntryChange(entry, null)]); });
        Assert.Null(await writer.ReadAsync(state, key));

        Assert.Equal(1, await writer.WriteAsync(state, key, Payload(), 0, [new StateEntryChange(entry, Payload())]));
        Assert.Equal(new[] { entry }, (await writer.ReadAsync(state, key))!.Entries.Keys);
    }

    private async Task<string> NewDatabaseAsync() => await fixture.CreateDatabaseAsync("split_" + Guid.NewGuid().ToString("N")[..12]);

    private static string NewTransactionId() => "tx-" + NewKeys(1)[0];

    private static byte[] Payload() => JsonSerializer.SerializeToUtf8Bytes(new { id = Guid.NewGuid() });

    private static EscrowRecord Record(long committed, string[] ids, int[] slots, PreparedTransaction<long>[][] prepared, DecidedTransaction[][] decided)
    {
        var record = new EscrowRecord { Resource = new EscrowCounter { Exists = true, Committed = committed, SuppliedTotal = committed } };
        for (var i = 0; i < ids.Length; i++)
        {
            switch (slots[i])
            {
                case 1 or 2:
                    record.Prepared[ids[i]] = prepared[i][slots[i] - 1];
                    break;
                case 3 or 4:
                    record.Decided[ids[i]] = decided[i][slots[i] - 3];
                    break;
                case 5:
                    var d = decided[i][1];
                    record.Decided[ids[i]] = new DecidedTransaction { Outcome = d.Outcome, DecidedAt = d.DecidedAt, Deadline = d.Deadline, KeepUntil = d.KeepUntil.ToOffset(d.KeepUntil.Offset + TimeSpan.FromHours(1)) };
                    break;
                case 6:
                    record.Prepared[ids[i]] = prepared[i][0];
                    record.Decided[ids[i]] = decided[i][0];
                    break;
            }
        }
        return record;
    }

    /// <summary>A record with <paramref name="tombstones"/> decided transactions and one prepared, of generated ids.</summary>
    private static EscrowRecord RecordWithTombstones(int tombstones)
    {
        var now = DateTimeOffset.UtcNow;
        var record = new EscrowRecord { Resource = new EscrowCounter { Exists = true, Committed = Random.Shared.Next(1, 1000), SuppliedTotal = 1000 } };
        for (var i = 0; i < tombstones; i++)
            record.Decided[NewTransactionId()] = new DecidedTransaction { Outcome = i % 2 == 0 ? Decision.Commit : Decision.Abort, DecidedAt = now, Deadline = now, KeepUntil = now + Retention };
        var tx = NewTransactionId();
        record.Prepared[tx] = new PreparedTransaction<long> { Work = 1, Coordinator = tx, PreparedAt = now, Deadline = now + PrepareWindow };
        return record;
    }

    /// <summary>The next step of a record: its prepared transactions commit, one more is prepared, the resource changes.</summary>
    private static EscrowRecord Evolve(EscrowRecord record)
    {
        var now = DateTimeOffset.UtcNow;
        var next = RecordWithTombstones(0);
        next.Resource.Committed = record.Resource.Committed - record.Prepared.Count;
        foreach (var (id, decided) in record.Decided) next.Decided[id] = decided;
        foreach (var (id, prepared) in record.Prepared)
            next.Decided[id] = new DecidedTransaction { Outcome = Decision.Commit, DecidedAt = now, Deadline = prepared.Deadline, KeepUntil = now + Retention };
        return next;
    }

    /// <summary>The entry rows a record is stored as: key → compact JSON of the entry.</summary>
    /// <summary>
    /// Splits <paramref name="record"/> against <paramref name="stored"/>, checks that it changes exactly the entries
    /// that differ from <paramref name="rows"/>, applies the changes to them as the database would, and marks the split
    /// written; the rows then hold exactly the record's entries.
    /// </summary>
    private static (StateSplit Split, Dictionary<string, byte[]> Expected) SplitAndApply(IStateLayout<EscrowRecord> layout, EscrowRecord record, IStoredEntries stored, Dictionary<string, byte[]> rows)
    {
        var expected = ExpectedRows(record);
        var differing = expected.Keys.Union(rows.Keys).Count(k => !(rows.TryGetValue(k, out var old) && expected.TryGetValue(k, out var value) && old.AsSpan().SequenceEqual(value)));
        var split = layout.Split(record, stored);
        Assert.Equal(differing, split.Changes.Count);
        foreach (var change in split.Changes)
            if (change.Payload is null) Assert.True(rows.Remove(change.Key));
            else rows[change.Key] = change.Payload;
        split.Written();
        Assert.Equal(Describe(expected), Describe(rows));
        return (split, expected);
    }

    private static Dictionary<string, byte[]> ExpectedRows(EscrowRecord record) => ExpectedRows<EscrowCounter, long>(record);

    private static Dictionary<string, byte[]> ExpectedRows<TResource, TWork>(ParticipantRecord<TResource, TWork> record) where TResource : new() =>
        record.Prepared.Select(p => (Key: StateLayouts.PreparedPrefix + p.Key, Value: EntryCodec.EncodePrepared(p.Key, p.Value)))
            .Concat(record.Decided.Select(d => (Key: StateLayouts.DecidedPrefix + d.Key, Value: EntryCodec.EncodeTombstone(d.Value))))
            .ToDictionary(e => e.Key, e => e.Value, StringComparer.Ordinal);

    private static string Describe(IReadOnlyDictionary<string, byte[]> rows) =>
        string.Join("\n", rows.OrderBy(r => r.Key, StringComparer.Ordinal).Select(r => r.Key + " = " + Convert.ToBase64String(r.Value)));

    /// <summary>A record as one string that does not depend on the order of its maps.</summary>
    private static string Canonical(EscrowRecord record) => JsonSerializer.Serialize(new
    {
        record.Resource,
        Prepared = record.Prepared.OrderBy(p => p.Key, StringComparer.Ordinal).ToList(),
        Decided = record.Decided.OrderBy(d => d.Key, StringComparer.Ordinal).ToList(),
    }, StateJson.Options);

    private static async Task<long> EntryRowsAsync(string db, string state, string key) =>
        (long)(await ScalarAsync(db, "SELECT count(*) FROM twopc_state_entry WHERE state_name = @s AND grain_key = @k", ("s", state), ("k", key)))!;

    private static async Task<Dictionary<string, byte[]>> EntryRowsOfAsync(string db, string state, string key)
    {
        await using var connection = new NpgsqlConnection(db);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT entry_key, payload FROM twopc_state_entry WHERE state_name = @s AND grain_key = @k", connection);
        command.Parameters.AddWithValue("s", state);
        command.Parameters.AddWithValue("k", key);
        var rows = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync()) rows.Add(reader.GetString(0), reader.GetFieldValue<byte[]>(1));
        return rows;
    }

    private static async Task<string> AllEntryRowsAsync(string db, string state) =>
        (string)(await ScalarAsync(db, "SELECT coalesce(string_agg(grain_key || '/' || entry_key || '=' || md5(payload), E'\\n' ORDER BY grain_key, entry_key), '') FROM twopc_state_entry WHERE state_name = @s", ("s", state)))!;
}
