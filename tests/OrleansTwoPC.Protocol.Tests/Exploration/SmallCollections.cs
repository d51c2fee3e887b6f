namespace OrleansTwoPC.Protocol.Tests.Exploration;

/// <summary>
/// An immutable map kept as a sorted array: a state's few entries (one per participant and transaction) are
/// shared by its clones for free and walked in key order without allocating.
/// </summary>
internal sealed class SmallMap<TKey, TValue>(KeyValuePair<TKey, TValue>[] entries, IComparer<TKey> order) where TKey : notnull
{
    private readonly KeyValuePair<TKey, TValue>[] _entries = entries;

    public SmallMap(IComparer<TKey> order) : this(Array.Empty<KeyValuePair<TKey, TValue>>(), order)
    {
    }

    public int Count => _entries.Length;

    public ReadOnlySpan<KeyValuePair<TKey, TValue>> Entries => _entries;

    public bool TryGetValue(TKey key, out TValue value)
    {
        var i = IndexOf(key);
        value = i >= 0 ? _entries[i].Value : default!;
        return i >= 0;
    }

    public bool ContainsKey(TKey key) => IndexOf(key) >= 0;

    public TValue GetValueOrDefault(TKey key, TValue otherwise) => TryGetValue(key, out var value) ? value : otherwise;

    public SmallMap<TKey, TValue> SetItem(TKey key, TValue value)
    {
        var i = IndexOf(key);
        KeyValuePair<TKey, TValue>[] next;
        if (i >= 0)
        {
            next = (KeyValuePair<TKey, TValue>[])_entries.Clone();
            next[i] = new(key, value);
        }
        else
        {
            i = ~i;
            next = new KeyValuePair<TKey, TValue>[_entries.Length + 1];
            Array.Copy(_entries, next, i);
            next[i] = new(key, value);
            Array.Copy(_entries, i, next, i + 1, _entries.Length - i);
        }
        return new SmallMap<TKey, TValue>(next, order);
    }

    public SmallMap<TKey, TValue> Clear() => _entries.Length == 0 ? this : new SmallMap<TKey, TValue>(order);

    /// <summary>The index of <paramref name="key"/>, or the complement of where it would go.</summary>
    private int IndexOf(TKey key)
    {
        int low = 0, high = _entries.Length - 1;
        while (low <= high)
        {
            var mid = (low + high) >> 1;
            var c = order.Compare(_entries[mid].Key, key);
            if (c == 0) return mid;
            if (c < 0) low = mid + 1;
            else high = mid - 1;
        }
        return ~low;
    }
}

/// <summary>An immutable set kept as a sorted array (see <see cref="SmallMap{TKey, TValue}"/>).</summary>
internal sealed class SmallSet<T>(T[] items, IComparer<T> order)
{
    private readonly T[] _items = items;

    public SmallSet(IComparer<T> order) : this(Array.Empty<T>(), order)
    {
    }

    public int Count => _items.Length;

    public ReadOnlySpan<T> Items => _items;

    public T Max => _items.Length > 0 ? _items[^1] : throw new InvalidOperationException("the set is empty");

    public bool Contains(T item) => Array.BinarySearch(_items, item, order) >= 0;

    public SmallSet<T> Add(T item)
    {
        var i = Array.BinarySearch(_items, item, order);
        if (i >= 0) return this;
        i = ~i;
        var next = new T[_items.Length + 1];
        Array.Copy(_items, next, i);
        next[i] = item;
        Array.Copy(_items, i, next, i + 1, _items.Length - i);
        return new SmallSet<T>(next, order);
    }
}
