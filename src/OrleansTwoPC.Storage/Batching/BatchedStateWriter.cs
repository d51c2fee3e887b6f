using System.Diagnostics.Metrics;
using System.Text;
using Npgsql;
using NpgsqlTypes;

namespace OrleansTwoPC.Storage.Batching;

/// <summary>
/// One grain's stored state: its version (the compare-and-swap token), payload (null once cleared) and the entry rows
/// that belong to that version (table <c>twopc_state_entry</c>, sql/060; empty for states stored in one row).
/// </summary>
public sealed record StoredGrainState(int Version, byte[]? Payload)
{
    public IReadOnlyDictionary<string, byte[]> Entries { get; init; } = NoEntries;

    internal static readonly IReadOnlyDictionary<string, byte[]> NoEntries = new Dictionary<string, byte[]>();
}

/// <summary>A change to one entry row of a grain: upsert <paramref name="Payload"/>, or delete the row when it is null.</summary>
public sealed record StateEntryChange(string Key, byte[]? Payload);

/// <summary>
/// Writes the state of many grains of one database (table <c>twopc_grain_state</c>, sql/050) in shared batches:
/// concurrent writes are collected and flushed as ONE prepared multi-row statement, so one round trip and one
/// PostgreSQL transaction (one commit, one WAL flush) carry the whole batch.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>Every row keeps its own version check: a mismatch fails only that write with
/// <see cref="StateVersionConflictException"/>; the other rows of the batch are written.</item>
/// <item>A failed batch (connection lost, statement or commit failed) fails every write in it with
/// <see cref="StateWriteOutcomeUnknownException"/>: the commit may have happened, so callers reload.</item>
/// <item>No write's task completes before the statement's implicit transaction has committed: the results are
/// only acted on once the server has reported the end of the statement, commit included.</item>
/// <item>The existing rows of a batch are locked in key order (byte order, <c>COLLATE "C"</c>) and new rows are
/// inserted in that order, so batches of different silos on the same rows queue instead of deadlocking.</item>
/// <item>No artificial delay: a write alone is sent at once; writes arriving while a batch is in flight form
/// the next one (at most <see cref="MaxBatchSize"/> rows), sent as soon as the previous one is done.</item>
/// <item>A write may carry changes to the grain's entry rows (<c>twopc_state_entry</c>, sql/060): they are made in the
/// same statement, only for grains whose head row passed its version check, so a conflict writes none of that grain's
/// entries and a failed batch none at all. Entry rows are only ever touched under their head row's lock, so they add
/// no lock order of their own.</item>
/// <item>Two writes of the same grain never share a batch (one statement cannot change a row twice); the later
/// one waits for the next batch. Orleans never has two writes of one activation in flight anyway.</item>
/// </list>
/// </remarks>
public sealed class BatchedStateWriter : IAsyncDisposable
{
    public const int DefaultMaxBatchSize = 64;

    /// <summary>The writer's connections carry this application name (pg_stat_activity).</summary>
    public const string ApplicationName = "twopc-batched-writer";

    // Rows to lock are found through the statement's snapshot, then locked in key order; FOR UPDATE returns each
    // row's newest committed version, and the UPDATE checks the version of that newest version. MATERIALIZED keeps
    // the lock step a separate, ordered scan.
    // Entry changes name their head by its position in the input (1-based) and are joined to the heads the statement
    // wrote: a head that failed its version check brings none of its entries along.
    private const string WriteSql = """
        WITH input AS MATERIALIZED (
            SELECT i.n, i.state_name COLLATE "C" AS state_name, i.grain_key COLLATE "C" AS grain_key, i.expected, i.payload, i.open
              FROM unnest(@states::text[], @keys::text[], @expected::integer[], @payloads::bytea[], @opens::boolean[]) WITH ORDINALITY
                   AS i(state_name, grain_key, expected, payload, open, n)
        ),
        locked AS MATERIALIZED (
            SELECT s.state_name, s.grain_key
              FROM twopc_grain_state AS s
              JOIN input AS i ON i.state_name = s.state_name AND i.grain_key = s.grain_key
             WHERE i.expected > 0
             ORDER BY s.state_name, s.grain_key
               FOR UPDATE OF s
        ),
        updated AS (
            UPDATE twopc_grain_state AS s
               SET payload = i.payload, version = s.version + 1, modified_on = now(), open = i.open
              FROM input AS i, locked AS l
             WHERE l.state_name = s.state_name AND l.grain_key = s.grain_key
               AND i.state_name = s.state_name AND i.grain_key = s.grain_key
               AND s.version = i.expected
            RETURNING s.state_name, s.grain_key, s.version
        ),
        inserted AS (
            INSERT INTO twopc_grain_state AS s (state_name, grain_key, version, payload, modified_on, open)
            SELECT i.state_name, i.grain_key, 1, i.payload, now(), i.open
              FROM input AS i
             WHERE i.expected = 0
             ORDER BY i.state_name, i.grain_key
            ON CONFLICT (state_name, grain_key) DO NOTHING
            RETURNING s.state_name, s.grain_key, s.version
        ),
        written AS (
            SELECT state_name, grain_key, version FROM updated
            UNION ALL
            SELECT state_name, grain_key, version FROM inserted
        ),
        changes AS MATERIALIZED (
            SELECT w.state_name, w.grain_key, c.entry_key COLLATE "C" AS entry_key, c.payload
              FROM unnest(@entryHeads::integer[], @entryKeys::text[], @entryPayloads::bytea[]) AS c(head, entry_key, payload)
              JOIN input AS i ON i.n = c.head
              JOIN written AS w ON w.state_name = i.state_name AND w.grain_key = i.grain_key
        ),
        upserted AS (
            INSERT INTO twopc_state_entry AS e (state_name, grain_key, entry_key, payload)
            SELECT c.state_name, c.grain_key, c.entry_key, c.payload
              FROM changes AS c
             WHERE c.payload IS NOT NULL
             ORDER BY c.state_name, c.grain_key, c.entry_key
            ON CONFLICT (state_name, grain_key, entry_key) DO UPDATE SET payload = excluded.payload
        ),
        deleted AS (
            DELETE FROM twopc_state_entry AS e
             USING changes AS c
             WHERE c.payload IS NULL
               AND e.state_name = c.state_name AND e.grain_key = c.grain_key AND e.entry_key = c.entry_key
        )
        SELECT state_name, grain_key, version FROM written
        """;

    /// <summary>
    /// The entry rows of the head row aliased <c>s</c>, as two arrays in key order (columns <c>keys</c>, <c>payloads</c>;
    /// NULL when it has none): joined with <c>LEFT JOIN LATERAL (...) AS e ON true</c> by every reader of split records,
    /// and turned back into a map by <see cref="EntriesOf"/>.
    /// </summary>
    internal const string EntryArraysOfHead =
        "SELECT array_agg(x.entry_key ORDER BY x.entry_key) AS keys, array_agg(x.payload ORDER BY x.entry_key) AS payloads " +
        "FROM twopc_state_entry AS x WHERE x.state_name = s.state_name AND x.grain_key = s.grain_key";

    // The head and its entries in one statement, so from one snapshot.
    private const string ReadSql =
        "SELECT s.version, s.payload, e.keys, e.payloads FROM twopc_grain_state AS s " +
        "LEFT JOIN LATERAL (" + EntryArraysOfHead + ") AS e ON true " +
        "WHERE s.state_name = @state AND s.grain_key = @key";

    // Clear keeps the row (NULL payload, next version) so that a stale activation's first write still collides, and
    // drops its entries (head first, as every writer does).
    private const string ClearSql = """
        WITH cleared AS (
            UPDATE twopc_grain_state SET payload = NULL, version = version + 1, modified_on = now(), open = false
             WHERE state_name = @state AND grain_key = @key AND version = @expected
            RETURNING state_name, grain_key, version
        ),
        dropped AS (
            DELETE FROM twopc_state_entry AS e USING cleared AS c
             WHERE e.state_name = c.state_name AND e.grain_key = c.grain_key
        )
        SELECT version FROM cleared
        """;

    private const string ExistsSql = "SELECT EXISTS (SELECT 1 FROM twopc_grain_state WHERE state_name = @state AND grain_key = @key)";

    private const string AdoNetStateSql = "SELECT EXISTS (SELECT 1 FROM orleansstorage WHERE payloadbinary IS NOT NULL)";

    /// <summary>Meter of the storage layer (<see cref="StateWriteBytes"/>).</summary>
    public const string MeterName = "OrleansTwoPC.Storage";

    /// <summary>Name of <see cref="StateWriteBytes"/> (listeners match on it: the field is not set while the instrument is published).</summary>
    public const string StateWriteBytesName = "twopc.storage.write.bytes";

    private static readonly Meter StorageMeter = new(MeterName);

    /// <summary>Bytes of one grain's write as sent: its head payload plus its entry rows' keys and payloads.</summary>
    public static readonly Histogram<long> StateWriteBytes = StorageMeter.CreateHistogram<long>(StateWriteBytesName, "By", "bytes of one grain state write as sent (head and changed entry rows)");

    private readonly NpgsqlDataSource dataSource;
    private readonly object gate = new();
    private readonly List<PendingWrite> pending = [];
    private readonly long[] batchSizeCounts;
    private Task? flushing;
    private bool disposed;
    private long committedBatches;
    private long committedWrites;
    private long sentStateBytes;
    private long sentEntryChanges;

    public BatchedStateWriter(string connectionString, int maxBatchSize = DefaultMaxBatchSize)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatchSize, 1);
        MaxBatchSize = maxBatchSize;
        batchSizeCounts = new long[maxBatchSize + 1];
        var builder = new NpgsqlConnectionStringBuilder(PostgresConnectionStrings.WithoutSessionReset(connectionString))
        {
            ApplicationName = ApplicationName,
        };
        dataSource = NpgsqlDataSource.Create(builder.ConnectionString);
    }

    public int MaxBatchSize { get; }

    /// <summary>Batches whose transaction committed.</summary>
    public long CommittedBatches => Interlocked.Read(ref committedBatches);

    /// <summary>Rows written by committed batches (version conflicts not counted).</summary>
    public long CommittedWrites => Interlocked.Read(ref committedWrites);

    /// <summary>
    /// Bytes of state sent in batches, committed or not: head payloads, entry keys (UTF-8) and entry payloads. What a
    /// write costs on the wire and in the WAL, besides the keys of its head.
    /// </summary>
    public long SentStateBytes => Interlocked.Read(ref sentStateBytes);

    /// <summary>Entry rows sent to be upserted or deleted, in batches committed or not.</summary>
    public long SentEntryChanges => Interlocked.Read(ref sentEntryChanges);

    /// <summary>How many committed batches had each size (index = rows sent in the batch, 1..MaxBatchSize).</summary>
    public IReadOnlyDictionary<int, long> BatchSizes()
    {
        var result = new SortedDictionary<int, long>();
        for (var size = 1; size < batchSizeCounts.Length; size++)
        {
            var count = Interlocked.Read(ref batchSizeCounts[size]);
            if (count > 0) result[size] = count;
        }
        return result;
    }

    /// <summary>
    /// Writes <paramref name="payload"/> as the state of (<paramref name="stateName"/>, <paramref name="key"/>) if its
    /// stored version is <paramref name="expectedVersion"/> (0: no row may exist). Completes, after the batch has
    /// committed, with the new version; fails with <see cref="StateVersionConflictException"/> (nothing written) or
    /// <see cref="StateWriteOutcomeUnknownException"/> (reload).
    /// </summary>
    public Task<int> WriteAsync(string stateName, string key, byte[] payload, int expectedVersion) =>
        WriteAsync(stateName, key, payload, expectedVersion, []);

    /// <summary>
    /// As above, and applies <paramref name="entryChanges"/> to the grain's entry rows in the same transaction, only if
    /// the version check passes. At most one change per entry key.
    /// </summary>
    public Task<int> WriteAsync(string stateName, string key, byte[] payload, int expectedVersion, IReadOnlyList<StateEntryChange> entryChanges) =>
        WriteAsync(stateName, key, payload, expectedVersion, entryChanges, open: false);

    /// <summary>
    /// As above; <paramref name="open"/> marks a state that holds an unfinished transaction (column <c>open</c>,
    /// sql/070: what the recovery sweep looks for).
    /// </summary>
    public Task<int> WriteAsync(string stateName, string key, byte[] payload, int expectedVersion, IReadOnlyList<StateEntryChange> entryChanges, bool open)
    {
        RequireText(stateName, nameof(stateName));
        RequireText(key, nameof(key));
        ArgumentNullException.ThrowIfNull(payload);
        ArgumentOutOfRangeException.ThrowIfNegative(expectedVersion);
        ArgumentNullException.ThrowIfNull(entryChanges);
        // Checked before queueing: one bad entry would otherwise fail every write of its batch.
        var entryKeys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var change in entryChanges)
        {
            ArgumentNullException.ThrowIfNull(change, nameof(entryChanges));
            RequireText(change.Key, nameof(entryChanges));
            if (!entryKeys.Add(change.Key)) throw new ArgumentException($"entry '{change.Key}' is changed twice", nameof(entryChanges));
        }
        var write = new PendingWrite(stateName, key, payload, expectedVersion, entryChanges, open);
        lock (gate)
        {
            ObjectDisposedException.ThrowIf(disposed, this);
            pending.Add(write);
            flushing ??= Task.Run(FlushLoopAsync);
        }
        return write.Completion.Task;
    }

    /// <summary>The stored state with its entry rows, or null when no row exists.</summary>
    public async Task<StoredGrainState?> ReadAsync(string stateName, string key, CancellationToken cancellationToken = default)
    {
        RequireText(stateName, nameof(stateName));
        RequireText(key, nameof(key));
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = KeyCommand(ReadSql, connection, stateName, key);
        await command.PrepareAsync(cancellationToken).ConfigureAwait(false);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false)) return null;
        var state = new StoredGrainState(reader.GetInt32(0), reader.IsDBNull(1) ? null : reader.GetFieldValue<byte[]>(1));
        return reader.IsDBNull(2) ? state : state with { Entries = EntriesOf(reader, 2) };
    }

    /// <summary>The entry rows read as the two arrays of <see cref="EntryArraysOfHead"/>, from column <paramref name="keysColumn"/> on.</summary>
    internal static IReadOnlyDictionary<string, byte[]> EntriesOf(NpgsqlDataReader reader, int keysColumn)
    {
        var keys = reader.GetFieldValue<string[]>(keysColumn);
        var payloads = reader.GetFieldValue<byte[][]>(keysColumn + 1);
        var entries = new Dictionary<string, byte[]>(keys.Length, StringComparer.Ordinal);
        for (var i = 0; i < keys.Length; i++) entries.Add(keys[i], payloads[i]);
        return entries;
    }

    /// <summary>
    /// Drops the payload if the stored version is <paramref name="expectedVersion"/>, keeping the row with the next
    /// version, which it returns. Expected 0 (never written) succeeds with 0 only while no row exists.
    /// </summary>
    public async Task<int> ClearAsync(string stateName, string key, int expectedVersion, CancellationToken cancellationToken = default)
    {
        RequireText(stateName, nameof(stateName));
        RequireText(key, nameof(key));
        ArgumentOutOfRangeException.ThrowIfNegative(expectedVersion);
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        if (expectedVersion == 0)
        {
            await using var exists = KeyCommand(ExistsSql, connection, stateName, key);
            if ((bool)(await exists.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!)
                throw new StateVersionConflictException(stateName, key, expectedVersion);
            return 0;
        }

        await using var command = KeyCommand(ClearSql, connection, stateName, key);
        command.Parameters.Add(new NpgsqlParameter<int>("expected", expectedVersion));
        await command.PrepareAsync(cancellationToken).ConfigureAwait(false);
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is int version
            ? version
            : throw new StateVersionConflictException(stateName, key, expectedVersion);
    }

    /// <summary>
    /// True when the database holds grain state written by Orleans' ADO.NET provider (table <c>orleansstorage</c>):
    /// state that this writer's readers would not see.
    /// </summary>
    public async Task<bool> HoldsAdoNetStateAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using var command = new NpgsqlCommand(AdoNetStateSql, connection);
        return (bool)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
    }

    /// <summary>Flushes what is queued, then refuses new writes.</summary>
    public async ValueTask DisposeAsync()
    {
        Task? last;
        lock (gate)
        {
            disposed = true;
            last = flushing;
        }
        if (last is not null) await last.ConfigureAwait(false);
        await dataSource.DisposeAsync().ConfigureAwait(false);
    }

    private async Task FlushLoopAsync()
    {
        while (true)
        {
            List<PendingWrite> batch;
            lock (gate)
            {
                if (pending.Count == 0)
                {
                    flushing = null;
                    return;
                }
                batch = TakeBatch();
            }
            await FlushAsync(batch).ConfigureAwait(false);
        }
    }

    /// <summary>The oldest queued writes, at most one per grain and <see cref="MaxBatchSize"/> in all. Under the gate.</summary>
    private List<PendingWrite> TakeBatch()
    {
        var batch = new List<PendingWrite>(Math.Min(pending.Count, MaxBatchSize));
        var grains = new HashSet<(string, string)>();
        var left = new List<PendingWrite>();
        foreach (var write in pending)
        {
            if (batch.Count < MaxBatchSize && grains.Add((write.StateName, write.Key))) batch.Add(write);
            else left.Add(write);
        }
        pending.Clear();
        pending.AddRange(left);
        return batch;
    }

    private async Task FlushAsync(List<PendingWrite> batch)
    {
        Dictionary<(string, string), int> written;
        try
        {
            written = await ExecuteAsync(batch).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // After a broken connection the idle pooled ones are likely dead too (database restarted).
            if (ex is NpgsqlException { IsTransient: true }) dataSource.Clear();
            foreach (var write in batch)
                write.Completion.TrySetException(new StateWriteOutcomeUnknownException(write.StateName, write.Key, ex));
            return;
        }

        Interlocked.Increment(ref committedBatches);
        Interlocked.Increment(ref batchSizeCounts[batch.Count]);
        Interlocked.Add(ref committedWrites, written.Count);
        foreach (var write in batch)
        {
            if (written.TryGetValue((write.StateName, write.Key), out var version)) write.Completion.TrySetResult(version);
            else write.Completion.TrySetException(new StateVersionConflictException(write.StateName, write.Key, write.ExpectedVersion));
        }
    }

    private async Task<Dictionary<(string, string), int>> ExecuteAsync(List<PendingWrite> batch)
    {
        await using var connection = await dataSource.OpenConnectionAsync().ConfigureAwait(false);
        await using var command = new NpgsqlCommand(WriteSql, connection);
        command.Parameters.Add(new NpgsqlParameter<string[]>("states", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = batch.Select(w => w.StateName).ToArray() });
        command.Parameters.Add(new NpgsqlParameter<string[]>("keys", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = batch.Select(w => w.Key).ToArray() });
        command.Parameters.Add(new NpgsqlParameter<int[]>("expected", NpgsqlDbType.Array | NpgsqlDbType.Integer) { TypedValue = batch.Select(w => w.ExpectedVersion).ToArray() });
        command.Parameters.Add(new NpgsqlParameter<byte[][]>("payloads", NpgsqlDbType.Array | NpgsqlDbType.Bytea) { TypedValue = batch.Select(w => w.Payload).ToArray() });
        command.Parameters.Add(new NpgsqlParameter<bool[]>("opens", NpgsqlDbType.Array | NpgsqlDbType.Boolean) { TypedValue = batch.Select(w => w.Open).ToArray() });
        var entryHeads = new List<int>();
        var entryKeys = new List<string>();
        var entryPayloads = new List<byte[]?>();
        long bytes = 0;
        for (var i = 0; i < batch.Count; i++)
        {
            long write = batch[i].Payload.Length;
            foreach (var change in batch[i].EntryChanges)
            {
                entryHeads.Add(i + 1);
                entryKeys.Add(change.Key);
                entryPayloads.Add(change.Payload);
                write += Encoding.UTF8.GetByteCount(change.Key) + (change.Payload?.Length ?? 0);
            }
            bytes += write;
            StateWriteBytes.Record(write);
        }
        command.Parameters.Add(new NpgsqlParameter<int[]>("entryHeads", NpgsqlDbType.Array | NpgsqlDbType.Integer) { TypedValue = entryHeads.ToArray() });
        command.Parameters.Add(new NpgsqlParameter<string[]>("entryKeys", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = entryKeys.ToArray() });
        command.Parameters.Add(new NpgsqlParameter<byte[]?[]>("entryPayloads", NpgsqlDbType.Array | NpgsqlDbType.Bytea) { TypedValue = entryPayloads.ToArray() });
        Interlocked.Add(ref sentStateBytes, bytes);
        Interlocked.Add(ref sentEntryChanges, entryKeys.Count);
        // Prepared once per physical connection; Npgsql keeps it across pool returns.
        await command.PrepareAsync().ConfigureAwait(false);

        var written = new Dictionary<(string, string), int>(batch.Count);
        await using (var reader = await command.ExecuteReaderAsync().ConfigureAwait(false))
        {
            while (await reader.ReadAsync().ConfigureAwait(false))
                written[(reader.GetString(0), reader.GetString(1))] = reader.GetInt32(2);
            // Rows arrive before the implicit commit; only the end of the statement (read here, up to
            // ReadyForQuery) says the commit happened, and a failing commit surfaces here as an exception.
            while (await reader.NextResultAsync().ConfigureAwait(false))
            {
            }
        }
        return written;
    }

    private static NpgsqlCommand KeyCommand(string sql, NpgsqlConnection connection, string stateName, string key)
    {
        var command = new NpgsqlCommand(sql, connection);
        command.Parameters.Add(new NpgsqlParameter<string>("state", NpgsqlDbType.Text) { TypedValue = stateName });
        command.Parameters.Add(new NpgsqlParameter<string>("key", NpgsqlDbType.Text) { TypedValue = key });
        return command;
    }

    /// <summary>
    /// PostgreSQL text holds neither NUL nor unpaired surrogates (which UTF-8 cannot carry): such a key would fail
    /// its whole batch, so it is refused here, before it is queued.
    /// </summary>
    private static void RequireText(string value, string name)
    {
        ArgumentNullException.ThrowIfNull(value, name);
        if (value.Length == 0) throw new ArgumentException("must not be empty", name);
        if (value.Contains('\0')) throw new ArgumentException("must not contain NUL", name);
        var rest = value.AsSpan();
        while (!rest.IsEmpty)
        {
            if (Rune.DecodeFromUtf16(rest, out _, out var used) != System.Buffers.OperationStatus.Done)
                throw new ArgumentException("is not valid UTF-16 (unpaired surrogate)", name);
            rest = rest[used..];
        }
    }

    private sealed class PendingWrite(string stateName, string key, byte[] payload, int expectedVersion, IReadOnlyList<StateEntryChange> entryChanges, bool open)
    {
        public string StateName { get; } = stateName;

        public string Key { get; } = key;

        public byte[] Payload { get; } = payload;

        public int ExpectedVersion { get; } = expectedVersion;

        public bool Open { get; } = open;

        // A copy: the caller's list may change once the write is queued.
        public StateEntryChange[] EntryChanges { get; } = [.. entryChanges];

        // Waiters' continuations (grain code) must not run on the flush loop.
        public TaskCompletionSource<int> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
