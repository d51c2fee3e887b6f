using System.Text.Json;
using OrleansTwoPC.Protocol.Participant;

namespace OrleansTwoPC.Storage.Batching;

/// <summary>
/// How a state type is stored as a head row plus entry rows (<c>twopc_state_entry</c>, sql/060), so that a write sends
/// the head and only the entries that changed. Types without a layout are stored in one row.
/// </summary>
public interface IStateLayout<in T>
{
    /// <summary>What the entry rows <paramref name="rows"/> (entry key → payload) hold, in the form <see cref="Split"/> compares against.</summary>
    IStoredEntries Remember(IReadOnlyDictionary<string, byte[]> rows);

    /// <summary>
    /// The head of <paramref name="state"/> and the entry changes that turn the rows <paramref name="stored"/> describes
    /// into the entries of <paramref name="state"/>. <paramref name="stored"/> is left as it is until
    /// <see cref="StateSplit.Written"/> is called.
    /// </summary>
    StateSplit Split(T state, IStoredEntries stored);
}

/// <summary>What one grain's entry rows hold, kept by its layout to compute the next write's changes.</summary>
public interface IStoredEntries
{
    int Count { get; }
}

/// <summary>A state split for writing: its head payload and the entry changes.</summary>
public sealed class StateSplit(byte[] head, IReadOnlyList<StateEntryChange> changes, Action written)
{
    public byte[] Head { get; } = head;

    public IReadOnlyList<StateEntryChange> Changes { get; } = changes;

    /// <summary>Call once the write has committed: brings the stored entries it was split against up to date.</summary>
    public void Written() => written();
}

/// <summary>
/// The layouts of the state types that are split, and the one way entry rows are joined back into a whole record
/// (used by the grain storage and by every reader that bypasses Orleans). Participant records
/// (<see cref="ParticipantRecord{TResource,TWork}"/>) are split: the head is the record without its
/// <c>Prepared</c> and <c>Decided</c> maps, and each map member is an entry row keyed by its map's prefix and
/// the transaction id. Every other state is stored in one row.
/// </summary>
public static class StateLayouts
{
    /// <summary>Entry key prefix of a prepared transaction.</summary>
    public const string PreparedPrefix = "p:";

    /// <summary>Entry key prefix of a decided transaction's tombstone.</summary>
    public const string DecidedPrefix = "d:";

    // Entry key prefix → the record's JSON property holding those entries as an object keyed by transaction id.
    private static readonly (string Prefix, string Property)[] Maps =
    [
        (PreparedPrefix, nameof(ParticipantRecord<object, object>.Prepared)),
        (DecidedPrefix, nameof(ParticipantRecord<object, object>.Decided)),
    ];

    /// <summary>The layout of <typeparamref name="T"/>, or null when it is stored in one row.</summary>
    public static IStateLayout<T>? Of<T>() => LayoutCache<T>.Layout;

    /// <summary>
    /// One JSON document from a head and its entry rows (entries in either form of <see cref="EntryCodec"/>): the
    /// head's properties, then each map rebuilt from its entries. A map the head still holds itself (a record stored
    /// in one row before it was split) is kept while no entry row of that map exists.
    /// </summary>
    public static byte[] Join(byte[] head, IReadOnlyDictionary<string, byte[]> entries)
    {
        ArgumentNullException.ThrowIfNull(head);
        ArgumentNullException.ThrowIfNull(entries);
        if (entries.Count == 0) return head;
        var grouped = new Dictionary<string, (string Prefix, List<KeyValuePair<string, byte[]>> Members)>(StringComparer.Ordinal);
        foreach (var entry in entries.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            var map = Maps.FirstOrDefault(m => entry.Key.StartsWith(m.Prefix, StringComparison.Ordinal));
            if (map.Property is null) throw new InvalidDataException($"entry row '{entry.Key}' belongs to no map of a split record");
            if (!grouped.TryGetValue(map.Property, out var group)) grouped[map.Property] = group = (map.Prefix, []);
            group.Members.Add(new(entry.Key[map.Prefix.Length..], entry.Value));
        }

        using var document = JsonDocument.Parse(head);
        if (document.RootElement.ValueKind != JsonValueKind.Object) throw new InvalidDataException("the head of a split record is not a JSON object");
        var buffer = new System.Buffers.ArrayBufferWriter<byte>(head.Length + entries.Sum(e => e.Key.Length + e.Value.Length + 4));
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            foreach (var property in document.RootElement.EnumerateObject())
                if (!grouped.ContainsKey(property.Name)) property.WriteTo(json);
            foreach (var (property, (prefix, members)) in grouped)
            {
                json.WriteStartObject(property);
                foreach (var (id, payload) in members)
                {
                    json.WritePropertyName(id);
                    EntryCodec.WriteJson(json, prefix, id, payload);
                }
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static class LayoutCache<T>
    {
        public static readonly IStateLayout<T>? Layout = Create();

        private static IStateLayout<T>? Create()
        {
            var type = typeof(T);
            if (!type.IsGenericType || type.GetGenericTypeDefinition() != typeof(ParticipantRecord<,>)) return null;
            var layout = typeof(ParticipantRecordLayout<,>).MakeGenericType(type.GetGenericArguments());
            return (IStateLayout<T>)Activator.CreateInstance(layout)!;
        }
    }
}
