using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Storage.Batching;

/// <summary>
/// A participant record as a head (the record without <c>Prepared</c> and <c>Decided</c>: the resource and anything
/// added later that is not per transaction) plus one entry row per prepared transaction (<c>p:&lt;txid&gt;</c>) and per
/// tombstone (<c>d:&lt;txid&gt;</c>): the head in the compact JSON of <see cref="StateJson"/>, the entries in the binary
/// form of <see cref="EntryCodec"/>. The head stays the same size whatever the load; a write changes the entries its
/// steps touched.
/// </summary>
/// <remarks>
/// Every write hands over a copy of the whole record, so the changes are found by comparing it with what the rows
/// hold: prepared transactions (few) by their serialized bytes. Tombstones (thousands on a hot participant) come as a
/// snapshot that names what changed since the snapshot before it; when that one is what the rows were last written
/// from, only those are compared, otherwise (after a read or a failed write) every tombstone, by value.
/// </remarks>
public sealed class ParticipantRecordLayout<TResource, TWork> : IStateLayout<ParticipantRecord<TResource, TWork>>
    where TResource : new()
{
    private static readonly JsonSerializerOptions HeadOptions = new(StateJson.Options)
    {
        TypeInfoResolver = new DefaultJsonTypeInfoResolver { Modifiers = { LeaveOutEntryMaps } },
    };

    static ParticipantRecordLayout()
    {
        // SameDecision compares tombstones field by field: a field it does not know would never be written again.
        var known = new[] { nameof(DecidedTransaction.Outcome), nameof(DecidedTransaction.DecidedAt), nameof(DecidedTransaction.Deadline), nameof(DecidedTransaction.KeepUntil) };
        var actual = typeof(DecidedTransaction).GetProperties().Select(p => p.Name).Order(StringComparer.Ordinal);
        if (!actual.SequenceEqual(known.Order(StringComparer.Ordinal), StringComparer.Ordinal))
            throw new InvalidOperationException($"{nameof(DecidedTransaction)} has properties {string.Join(", ", actual)}; {nameof(SameDecision)} compares {string.Join(", ", known)}");
    }

    public IStoredEntries Remember(IReadOnlyDictionary<string, byte[]> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var stored = new Stored();
        foreach (var (key, payload) in rows)
        {
            if (key.StartsWith(StateLayouts.PreparedPrefix, StringComparison.Ordinal))
                stored.Prepared.Add(key[StateLayouts.PreparedPrefix.Length..], payload);
            else if (key.StartsWith(StateLayouts.DecidedPrefix, StringComparison.Ordinal))
                stored.Decided.Add(key[StateLayouts.DecidedPrefix.Length..], EntryCodec.DecodeTombstone(payload));
            else
                throw new InvalidDataException($"entry row '{key}' belongs to no map of a participant record");
        }
        return stored;
    }

    public StateSplit Split(ParticipantRecord<TResource, TWork> state, IStoredEntries stored)
    {
        ArgumentNullException.ThrowIfNull(state);
        if (stored is not Stored rows) throw new ArgumentException("entries remembered by another layout", nameof(stored));
        var head = JsonSerializer.SerializeToUtf8Bytes(state, HeadOptions);
        var prepared = state.Prepared ?? [];
        var decided = state.Decided ?? new TombstoneMap();
        var changes = new List<StateEntryChange>();
        List<(string Id, byte[]? Payload)>? preparedChanges = null;
        List<(string Id, DecidedTransaction? Value)>? decidedChanges = null;

        foreach (var (id, transaction) in prepared)
        {
            var payload = EntryCodec.EncodePrepared(id, transaction);
            if (rows.Prepared.TryGetValue(id, out var old) && old.AsSpan().SequenceEqual(payload)) continue;
            changes.Add(new StateEntryChange(StateLayouts.PreparedPrefix + id, payload));
            (preparedChanges ??= []).Add((id, payload));
        }
        foreach (var id in rows.Prepared.Keys)
        {
            if (prepared.ContainsKey(id)) continue;
            changes.Add(new StateEntryChange(StateLayouts.PreparedPrefix + id, null));
            (preparedChanges ??= []).Add((id, null));
        }
        if (decided.ChangedSince(rows.Lineage, rows.Generation) is { } changed)
        {
            // The snapshot written last is the one just before this one: only the tombstones it names changed.
            foreach (var id in changed)
                if (decided.TryGetValue(id, out var tombstone)) AddDecided(id, tombstone);
                else if (rows.Decided.ContainsKey(id)) AddDecided(id, null);
        }
        else
        {
            foreach (var (id, tombstone) in decided) AddDecided(id, tombstone);
            foreach (var id in rows.Decided.Keys)
                if (!decided.ContainsKey(id)) AddDecided(id, null);
        }

        void AddDecided(string id, DecidedTransaction? tombstone)
        {
            // Tombstones are immutable: the one remembered is usually the very instance the record still holds.
            if (tombstone is not null && rows.Decided.TryGetValue(id, out var old) && (ReferenceEquals(old, tombstone) || SameDecision(old, tombstone))) return;
            changes.Add(new StateEntryChange(StateLayouts.DecidedPrefix + id, tombstone is null ? null : EntryCodec.EncodeTombstone(tombstone)));
            (decidedChanges ??= []).Add((id, tombstone));
        }

        return new StateSplit(head, changes, () =>
        {
            foreach (var (id, payload) in preparedChanges ?? [])
                if (payload is null) rows.Prepared.Remove(id);
                else rows.Prepared[id] = payload;
            foreach (var (id, value) in decidedChanges ?? [])
                if (value is null) rows.Decided.Remove(id);
                else rows.Decided[id] = value;
            rows.Lineage = decided.Lineage;
            rows.Generation = decided.Generation;
        });
    }

    private static bool SameDecision(DecidedTransaction a, DecidedTransaction b) =>
        a.Outcome == b.Outcome && a.DecidedAt.EqualsExact(b.DecidedAt) && a.KeepUntil.EqualsExact(b.KeepUntil) &&
        (a.Deadline is { } x ? b.Deadline is { } y && x.EqualsExact(y) : b.Deadline is null);

    private static void LeaveOutEntryMaps(JsonTypeInfo info)
    {
        if (info.Type != typeof(ParticipantRecord<TResource, TWork>)) return;
        for (var i = info.Properties.Count - 1; i >= 0; i--)
            if (info.Properties[i].Name is nameof(ParticipantRecord<TResource, TWork>.Prepared) or nameof(ParticipantRecord<TResource, TWork>.Decided))
                info.Properties.RemoveAt(i);
    }

    private sealed class Stored : IStoredEntries
    {
        public Dictionary<string, byte[]> Prepared { get; } = new(StringComparer.Ordinal);

        public Dictionary<string, DecidedTransaction> Decided { get; } = new(StringComparer.Ordinal);

        public int Count => Prepared.Count + Decided.Count;

        /// <summary>The tombstone snapshot these rows were last written from (none after a read).</summary>
        public object? Lineage { get; set; }

        public long Generation { get; set; }
    }
}
