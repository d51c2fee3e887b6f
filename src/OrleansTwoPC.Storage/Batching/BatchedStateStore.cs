using System.Runtime.CompilerServices;
using OrleansTwoPC.Protocol.Coordinator;

namespace OrleansTwoPC.Storage.Batching;

/// <summary>
/// Typed grain state over a <see cref="BatchedStateWriter"/>: a state type with a layout (<see cref="StateLayouts"/>)
/// is stored as a head row plus entry rows and each write sends the head and only the entries that changed; any
/// other state is one row. Reads join head and entries back into one payload, so callers always see whole records.
/// </summary>
/// <remarks>
/// To know what changed, the store remembers, per state object (<paramref name="owner"/> in the methods: Orleans
/// keeps one per grain state and activation), what the entry rows of the version it last read or wrote hold. The
/// entries of a version never change (they are only written with the head's version bump), so that memory is exact
/// for its version and simply unused otherwise. A write whose version the store has not seen (another state object,
/// a failed write) reads the entries first, and refuses at once when the stored version is not the expected one.
/// </remarks>
public sealed class BatchedStateStore(BatchedStateWriter writer)
{
    private readonly ConditionalWeakTable<object, Known> known = new();
    private long entryReads;

    public BatchedStateWriter Writer => writer;

    /// <summary>Writes that had to read the stored entries first because the store did not know them.</summary>
    public long EntryReads => Interlocked.Read(ref entryReads);

    /// <summary>The stored state, its payload joined from head and entries; null when no row exists.</summary>
    public async Task<StoredGrainState?> ReadAsync<T>(string stateName, string key, object owner, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(owner);
        var stored = await writer.ReadAsync(stateName, key, cancellationToken).ConfigureAwait(false);
        if (stored is null) return null;
        if (StateLayouts.Of<T>() is { } layout) known.AddOrUpdate(owner, new Known(stateName, key, stored.Version, layout.Remember(stored.Entries)));
        return stored.Payload is null || stored.Entries.Count == 0
            ? stored with { Entries = StoredGrainState.NoEntries }
            : new StoredGrainState(stored.Version, StateLayouts.Join(stored.Payload, stored.Entries));
    }

    /// <summary>
    /// Writes <paramref name="state"/> if the stored version is <paramref name="expectedVersion"/> (0: no row), as
    /// <see cref="BatchedStateWriter.WriteAsync(string, string, byte[], int)"/> does; <paramref name="serialize"/> makes
    /// the payload of a state stored in one row.
    /// </summary>
    public async Task<int> WriteAsync<T>(string stateName, string key, T state, int expectedVersion, object owner, Func<T, byte[]> serialize)
    {
        ArgumentNullException.ThrowIfNull(owner);
        ArgumentNullException.ThrowIfNull(serialize);
        if (StateLayouts.Of<T>() is not { } layout) return await writer.WriteAsync(stateName, key, serialize(state), expectedVersion, [], IsOpen(state)).ConfigureAwait(false);

        var stored = await StoredEntriesAsync(layout, stateName, key, expectedVersion, owner).ConfigureAwait(false);
        var split = layout.Split(state, stored);
        var version = await writer.WriteAsync(stateName, key, split.Head, expectedVersion, split.Changes, IsOpen(state)).ConfigureAwait(false);
        split.Written();
        known.AddOrUpdate(owner, new Known(stateName, key, version, stored));
        return version;
    }

    /// <summary>Clears as <see cref="BatchedStateWriter.ClearAsync"/> does (the head's entries go with its payload).</summary>
    public async Task<int> ClearAsync<T>(string stateName, string key, int expectedVersion, object owner, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(owner);
        var version = await writer.ClearAsync(stateName, key, expectedVersion, cancellationToken).ConfigureAwait(false);
        if (StateLayouts.Of<T>() is { } layout && version > 0) known.AddOrUpdate(owner, new Known(stateName, key, version, layout.Remember(StoredGrainState.NoEntries)));
        return version;
    }

    /// <summary>
    /// Marked open (sql/070) for the recovery sweep: a coordinator record whose transaction is not completed. A
    /// participant's prepared transactions are entry rows of their own, found through the entry table.
    /// </summary>
    private static bool IsOpen<T>(T state) => state is CoordinatorRecord { IsCompleted: false };

    private async Task<IStoredEntries> StoredEntriesAsync<T>(IStateLayout<T> layout, string stateName, string key, int expectedVersion, object owner)
    {
        // No row: no entries (if a row exists after all, the version check fails and nothing is written).
        if (expectedVersion == 0) return layout.Remember(StoredGrainState.NoEntries);
        if (known.TryGetValue(owner, out var remembered) && remembered.Is(stateName, key, expectedVersion)) return remembered.Entries;

        Interlocked.Increment(ref entryReads);
        var stored = await writer.ReadAsync(stateName, key).ConfigureAwait(false);
        // Versions only grow: the write would fail its version check anyway.
        if (stored is null || stored.Version != expectedVersion) throw new StateVersionConflictException(stateName, key, expectedVersion);
        return layout.Remember(stored.Entries);
    }

    private sealed class Known(string stateName, string key, int version, IStoredEntries entries)
    {
        public IStoredEntries Entries { get; } = entries;

        public bool Is(string otherStateName, string otherKey, int otherVersion) =>
            version == otherVersion && string.Equals(stateName, otherStateName, StringComparison.Ordinal) && string.Equals(key, otherKey, StringComparison.Ordinal);
    }
}
