using System.Collections;
using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;

namespace OrleansTwoPC.Protocol.Participant;

/// <summary>
/// A participant's tombstones by transaction id. A hot participant holds thousands (one per transaction decided
/// within the retention) and changes a few per step, so nothing here costs in proportion to the whole map: a copy
/// for a write is a <see cref="Snapshot"/> (the map is persistent underneath), each snapshot names the transactions
/// whose tombstone changed since the previous snapshot of the same map (<see cref="ChangedSince"/>), so a storage
/// keeping tombstones in rows of their own writes only those, and <see cref="RemoveExpired"/> finds expired
/// tombstones in order of expiry instead of scanning.
/// </summary>
public sealed class TombstoneMap : IDictionary<string, DecidedTransaction>, IReadOnlyDictionary<string, DecidedTransaction>
{
    private ImmutableDictionary<string, DecidedTransaction> _items;

    // A live map and its snapshots share a lineage; a snapshot knows its generation and what changed since the one before.
    private readonly object _lineage;
    private long _generation;
    private readonly bool _frozen;
    private HashSet<string>? _changed;

    // Live maps: every tombstone set, by keep-until time (stale ones, replaced or removed since, are skipped). Built on first use.
    private PriorityQueue<(string Id, DateTimeOffset KeepUntil), DateTimeOffset>? _expiries;

    public TombstoneMap()
        : this(ImmutableDictionary.Create<string, DecidedTransaction>(StringComparer.Ordinal), new object(), 0, frozen: false)
    {
    }

    private TombstoneMap(ImmutableDictionary<string, DecidedTransaction> items, object lineage, long generation, bool frozen)
    {
        _items = items;
        _lineage = lineage;
        _generation = generation;
        _frozen = frozen;
    }

    /// <summary>Frozen: a snapshot, which never changes.</summary>
    public bool IsReadOnly => _frozen;

    /// <summary>Identifies the live map this one is or was a snapshot of.</summary>
    public object Lineage => _lineage;

    /// <summary>Of a snapshot: its place in its lineage (1 for the first).</summary>
    public long Generation => _generation;

    public int Count => _items.Count;

    public IEnumerable<string> Keys => _items.Keys;

    public IEnumerable<DecidedTransaction> Values => _items.Values;

    ICollection<string> IDictionary<string, DecidedTransaction>.Keys => [.. _items.Keys];

    ICollection<DecidedTransaction> IDictionary<string, DecidedTransaction>.Values => [.. _items.Values];

    public DecidedTransaction this[string key]
    {
        get => _items[key];
        set
        {
            ArgumentNullException.ThrowIfNull(value);
            Change(key);
            _items = _items.SetItem(key, value);
            _expiries?.Enqueue((key, value.KeepUntil), value.KeepUntil);
        }
    }

    /// <summary>
    /// A frozen copy of the map as it is now, in O(1). Its <see cref="ChangedSince"/> names what changed since the
    /// previous snapshot; the live map starts counting anew.
    /// </summary>
    public TombstoneMap Snapshot()
    {
        if (_frozen) return this;
        var snapshot = new TombstoneMap(_items, _lineage, ++_generation, frozen: true) { _changed = _changed };
        _changed = null;
        return snapshot;
    }

    /// <summary>A live map holding what this one holds, in a lineage of its own (a frozen map cannot be changed).</summary>
    public TombstoneMap Thaw() => _frozen ? new TombstoneMap(_items, new object(), 0, frozen: false) : this;

    /// <summary>
    /// Of a snapshot: the transactions whose tombstone was set or removed since the snapshot
    /// (<paramref name="lineage"/>, <paramref name="generation"/>), when that is the one just before it, empty when it
    /// is this one, and null when it is neither (the caller compares the whole map).
    /// </summary>
    public IReadOnlyCollection<string>? ChangedSince(object? lineage, long generation)
    {
        if (!_frozen || !ReferenceEquals(lineage, _lineage)) return null;
        if (generation == _generation) return [];
        if (generation != _generation - 1) return null;
        return _changed is null ? [] : _changed;
    }

    /// <summary>
    /// Removes at most <paramref name="limit"/> of the tombstones whose keep-until time is before <paramref name="now"/>,
    /// the oldest first; returns how many it removed.
    /// </summary>
    public int RemoveExpired(DateTimeOffset now, int limit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(limit);
        ThrowIfFrozen();
        var removed = 0;
        if (_expiries is null)
        {
            _expiries = new PriorityQueue<(string, DateTimeOffset), DateTimeOffset>(_items.Count);
            foreach (var (id, tombstone) in _items) _expiries.Enqueue((id, tombstone.KeepUntil), tombstone.KeepUntil);
        }
        while (removed < limit && _expiries.TryPeek(out var entry, out var keepUntil) && now > keepUntil)
        {
            _expiries.Dequeue();
            // Only the tombstone this entry was made for: a later one for the same transaction has its own entry.
            if (_items.TryGetValue(entry.Id, out var current) && current.KeepUntil == entry.KeepUntil)
            {
                Change(entry.Id);
                _items = _items.Remove(entry.Id);
                removed++;
            }
        }
        return removed;
    }

    public void Add(string key, DecidedTransaction value)
    {
        if (_items.ContainsKey(key)) throw new ArgumentException($"a tombstone for '{key}' exists", nameof(key));
        this[key] = value;
    }

    public void Add(KeyValuePair<string, DecidedTransaction> item) => Add(item.Key, item.Value);

    public bool Remove(string key)
    {
        ThrowIfFrozen();
        if (!_items.ContainsKey(key)) return false;
        Change(key);
        _items = _items.Remove(key);
        return true;
    }

    public bool Remove(KeyValuePair<string, DecidedTransaction> item) =>
        _items.TryGetValue(item.Key, out var value) && ReferenceEquals(value, item.Value) && Remove(item.Key);

    public void Clear()
    {
        ThrowIfFrozen();
        foreach (var id in _items.Keys) Change(id);
        _items = _items.Clear();
        _expiries = null;
    }

    public bool ContainsKey(string key) => _items.ContainsKey(key);

    public bool Contains(KeyValuePair<string, DecidedTransaction> item) => _items.Contains(item);

    public bool TryGetValue(string key, [MaybeNullWhen(false)] out DecidedTransaction value) => _items.TryGetValue(key, out value);

    public void CopyTo(KeyValuePair<string, DecidedTransaction>[] array, int arrayIndex) => ((ICollection<KeyValuePair<string, DecidedTransaction>>)_items).CopyTo(array, arrayIndex);

    public IEnumerator<KeyValuePair<string, DecidedTransaction>> GetEnumerator() => _items.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    private void Change(string key)
    {
        ThrowIfFrozen();
        (_changed ??= new HashSet<string>(StringComparer.Ordinal)).Add(key);
    }

    private void ThrowIfFrozen()
    {
        if (_frozen) throw new InvalidOperationException("a snapshot of the tombstones cannot change; thaw it first");
    }
}
