using OrleansTwoPC.Protocol.Participant;

namespace OrleansTwoPC.Protocol.Tests.Exploration;

/// <summary>
/// A list of values in chunks of a million: grows without copying what it holds (no doubling spike), holds more
/// than one array may, and gives back the chunks in front of a point (a breadth-first queue's consumed part).
/// </summary>
internal sealed class BigList<T> where T : struct
{
    private const int Shift = 20;
    private const int Size = 1 << Shift;
    private readonly List<T[]?> _chunks = new();

    public long Count { get; private set; }

    public void Add(T value)
    {
        var chunk = (int)(Count >> Shift);
        if (chunk == _chunks.Count) _chunks.Add(new T[Size]);
        _chunks[chunk]![Count & (Size - 1)] = value;
        Count++;
    }

    public T this[long index]
    {
        get => _chunks[(int)(index >> Shift)]![index & (Size - 1)];
        set => _chunks[(int)(index >> Shift)]![index & (Size - 1)] = value;
    }

    /// <summary>Gives back every chunk that lies wholly before <paramref name="index"/>; those values are not read again.</summary>
    public void ReleaseBefore(long index)
    {
        for (var chunk = (int)(index >> Shift) - 1; chunk >= 0 && _chunks[chunk] is not null; chunk--) _chunks[chunk] = null;
    }
}

/// <summary>
/// The states seen so far, by the 128-bit hash of their canonical form: each state's hash is kept once, by its
/// number, and an open-addressing table of numbers finds them (4 bytes a slot, no entry objects). One form may
/// have several states (different fault budgets), each in its own slot.
/// </summary>
internal sealed class FingerprintTable
{
    private readonly BigList<ulong> _low = new();
    private readonly BigList<ulong> _high = new();
    private int[] _slots = NewSlots(1 << 16);

    public int Count => (int)_low.Count;

    /// <summary>Adds the state numbered <see cref="Count"/>.</summary>
    public void Add(UInt128 hash)
    {
        if (Count >= int.MaxValue - 1) throw new InvalidOperationException("more states than a table of 32-bit numbers holds");
        _low.Add((ulong)hash);
        _high.Add((ulong)(hash >> 64));
        if ((long)Count * 4 > (long)_slots.Length * 3) Grow();
        else Place(_slots, Count - 1, (ulong)hash);
    }

    /// <summary>The states of this form, one a call: start with <paramref name="cursor"/> at -1, call until it returns false.</summary>
    public bool Next(UInt128 hash, ref int cursor, out int state)
    {
        var mask = _slots.Length - 1;
        ulong low = (ulong)hash, high = (ulong)(hash >> 64);
        var slot = cursor < 0 ? (int)(low & (ulong)mask) : cursor;
        while (true)
        {
            var id = _slots[slot];
            slot = (slot + 1) & mask;
            if (id < 0) break;
            if (_low[id] != low || _high[id] != high) continue;
            cursor = slot;
            state = id;
            return true;
        }
        state = -1;
        return false;
    }

    private static int[] NewSlots(int size)
    {
        var slots = new int[size];
        Array.Fill(slots, -1);
        return slots;
    }

    private void Grow()
    {
        var slots = NewSlots(_slots.Length * 2);
        for (var id = 0; id < Count; id++) Place(slots, id, _low[id]);
        _slots = slots;
    }

    private static void Place(int[] slots, int id, ulong low)
    {
        var mask = slots.Length - 1;
        var slot = (int)(low & (ulong)mask);
        while (slots[slot] >= 0) slot = (slot + 1) & mask;
        slots[slot] = id;
    }
}

/// <summary>Distinct values by the hash of their canonical form, each numbered once.</summary>
internal sealed class Interned<T> where T : class
{
    private readonly Dictionary<UInt128, int> _ids = new();
    private readonly List<T> _items = new();

    public int Count => _items.Count;

    public int Intern(UInt128 key, T item)
    {
        if (_ids.TryGetValue(key, out var id)) return id;
        _ids.Add(key, _items.Count);
        _items.Add(item);
        return _items.Count - 1;
    }

    public T this[int id] => _items[id];
}

/// <summary>
/// The breadth-first queue, held compactly: a state waiting to be expanded is a row of numbers (the clock, the
/// budgets, and the number of each of its parts), each part kept once however many states hold it. A world
/// explored from a row is built from clones of those parts, which share every machine until one is changed.
/// Parts are told apart by their canonical form, the same bytes that make up the state's form, so a state built
/// from a row has the form of the state that was queued.
/// </summary>
internal sealed class WorldQueue(World template)
{
    private readonly int _width = 7 + template.Coordinators.Count + template.Participants.Count;
    private readonly BigList<int> _rows = new();
    private readonly StateKey _key = new();
    private readonly Interned<ExCoordinator> _coordinators = new();
    private readonly Interned<ExParticipant> _participants = new();
    private readonly Interned<List<ExMessage>> _messages = new();
    private readonly Interned<SmallMap<string, Decision>> _outcomes = new();
    private readonly Interned<SmallSet<string>> _rolledBack = new();
    private long _head;

    public bool IsEmpty => _head == _rows.Count;

    /// <summary>How many distinct parts are kept (coordinators, participants, sets of messages in flight, histories).</summary>
    public int Parts => _coordinators.Count + _participants.Count + _messages.Count + _outcomes.Count + _rolledBack.Count;

    public void Enqueue(World world)
    {
        Add(world.Now.UtcTicks);
        Add(world.Budgets);
        // The forms leave out who a part is (its place in the world says it), so the place goes into the part's key.
        for (var i = 0; i < world.Coordinators.Count; i++)
        {
            var c = world.Coordinators[i];
            _key.Clear();
            _key.Add(i);
            c.WriteKey(_key);
            _rows.Add(_coordinators.Intern(_key.Hash(), c));
        }
        for (var i = 0; i < world.Participants.Count; i++)
        {
            var p = world.Participants[i];
            _key.Clear();
            _key.Add(i);
            p.WriteKey(_key);
            _rows.Add(_participants.Intern(_key.Hash(), p));
        }
        _key.Clear();
        foreach (var m in world.Messages) _key.Add(m.Id);
        _rows.Add(_messages.Intern(_key.Hash(), world.Messages));
        _key.Clear();
        foreach (var (k, v) in world.DurableOutcomes.Entries) { _key.Add(k); _key.Add((int)v); }
        _rows.Add(_outcomes.Intern(_key.Hash(), world.DurableOutcomes));
        _key.Clear();
        foreach (var k in world.RolledBackAttempts.Items) _key.Add(k);
        _rows.Add(_rolledBack.Intern(_key.Hash(), world.RolledBackAttempts));
    }

    public World Dequeue()
    {
        var i = _head;
        _rows.ReleaseBefore(_head);
        _head += _width;
        var now = new DateTimeOffset(Long(ref i), TimeSpan.Zero);
        var budgets = Long(ref i);
        var coordinators = new List<ExCoordinator>(template.Coordinators.Count);
        for (var c = 0; c < template.Coordinators.Count; c++) coordinators.Add(_coordinators[_rows[i++]].Clone());
        var participants = new List<ExParticipant>(template.Participants.Count);
        for (var p = 0; p < template.Participants.Count; p++) participants.Add(_participants[_rows[i++]].Clone());
        var messages = new List<ExMessage>(_messages[_rows[i++]]);
        var outcomes = _outcomes[_rows[i++]];
        var rolledBack = _rolledBack[_rows[i]];
        return template.With(now, budgets, coordinators, participants, messages, outcomes, rolledBack);
    }

    private void Add(long value)
    {
        _rows.Add((int)value);
        _rows.Add((int)(value >> 32));
    }

    private long Long(ref long i)
    {
        var low = (uint)_rows[i++];
        var high = (long)_rows[i++];
        return high << 32 | low;
    }
}

/// <summary>
/// Two participants that behave alike in a scope (see <see cref="Reductions.Symmetry"/>): the places
/// <see cref="First"/> and <see cref="Last"/> in the world's participants and in every coordinator record, and their
/// names wherever a form writes a name.
/// </summary>
internal sealed class Swap(int first, int last, string firstName, string lastName)
{
    private readonly Dictionary<string, string> _renamed = new(StringComparer.Ordinal);

    public int First { get; } = first;
    public int Last { get; } = last;

    /// <summary>The place whose part takes place <paramref name="i"/> once the two are exchanged.</summary>
    public int Place(int i) => i == First ? Last : i == Last ? First : i;

    /// <summary>The other name of the two, or null for a name not swapped.</summary>
    public string? Other(string name) => name == firstName ? lastName : name == lastName ? firstName : null;

    /// <summary>A history key ("participant|transaction...") with its participant exchanged.</summary>
    public string Rename(string text)
    {
        if (_renamed.TryGetValue(text, out var renamed)) return renamed;
        var bar = text.IndexOf('|', StringComparison.Ordinal);
        var name = bar < 0 ? text : text[..bar];
        renamed = Other(name) is { } other ? other + text[name.Length..] : text;
        _renamed.Add(text, renamed);
        return renamed;
    }

    /// <summary>Entries with their keys renamed, in key order again.</summary>
    public KeyValuePair<string, T>[] Renamed<T>(ReadOnlySpan<KeyValuePair<string, T>> entries)
    {
        var renamed = new KeyValuePair<string, T>[entries.Length];
        for (var i = 0; i < entries.Length; i++) renamed[i] = new(Rename(entries[i].Key), entries[i].Value);
        if (renamed.Length > 1) Array.Sort(renamed, (a, b) => string.CompareOrdinal(a.Key, b.Key));
        return renamed;
    }

    /// <summary>Keys renamed, in order again.</summary>
    public string[] Renamed(ReadOnlySpan<string> keys)
    {
        var renamed = new string[keys.Length];
        for (var i = 0; i < keys.Length; i++) renamed[i] = Rename(keys[i]);
        if (renamed.Length > 1) Array.Sort(renamed, StringComparer.Ordinal);
        return renamed;
    }
}
