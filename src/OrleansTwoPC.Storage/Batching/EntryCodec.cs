using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Storage.Batching;

/// <summary>
/// The payload of an entry row (<c>twopc_state_entry</c>): a prepared transaction or a tombstone in a compact binary
/// form, because a hot participant writes several per write and the JSON form spends most of its bytes on property
/// names and times as text (about 150 bytes a tombstone against 19–27). Entries written as JSON (before this form,
/// or a time with a non-zero offset, which the binary form does not carry) stay JSON; both are read.
/// </summary>
/// <remarks>
/// Little-endian. Tombstone: tag 1, the outcome (<see cref="Decision"/> as a byte), a flags byte (bit 0: a deadline
/// follows), then the UTC ticks of <c>DecidedAt</c>, <c>KeepUntil</c> and, if flagged, <c>Deadline</c>, 8 bytes each.
/// Prepared transaction: tag 2, a flags byte (bit 0: the coordinator key is the transaction id and is left out), the
/// UTC ticks of <c>PreparedAt</c> and <c>Deadline</c>, then unless flagged the coordinator key (4-byte length and
/// UTF-8), then the work as the compact JSON of <see cref="StateJson"/> to the end.
/// </remarks>
public static class EntryCodec
{
    private const byte TombstoneTag = 1;
    private const byte PreparedTag = 2;
    private const byte JsonStart = (byte)'{';
    private const byte HasDeadline = 1;
    private const byte CoordinatorIsTransaction = 1;

    public static byte[] EncodeTombstone(DecidedTransaction tombstone)
    {
        ArgumentNullException.ThrowIfNull(tombstone);
        if (!IsUtc(tombstone.DecidedAt) || !IsUtc(tombstone.KeepUntil) || tombstone.Deadline is { } d && !IsUtc(d))
            return JsonSerializer.SerializeToUtf8Bytes(tombstone, StateJson.Options);
        var payload = new byte[3 + 8 + 8 + (tombstone.Deadline is null ? 0 : 8)];
        payload[0] = TombstoneTag;
        payload[1] = (byte)tombstone.Outcome;
        payload[2] = tombstone.Deadline is null ? (byte)0 : HasDeadline;
        BinaryPrimitives.WriteInt64LittleEndian(payload.AsSpan(3), tombstone.DecidedAt.UtcTicks);
        BinaryPrimitives.WriteInt64LittleEndian(payload.AsSpan(11), tombstone.KeepUntil.UtcTicks);
        if (tombstone.Deadline is { } deadline) BinaryPrimitives.WriteInt64LittleEndian(payload.AsSpan(19), deadline.UtcTicks);
        return payload;
    }

    public static DecidedTransaction DecodeTombstone(ReadOnlySpan<byte> payload)
    {
        if (payload.IsEmpty) throw new InvalidDataException("an empty tombstone entry");
        if (payload[0] == JsonStart)
            return JsonSerializer.Deserialize<DecidedTransaction>(payload, StateJson.Options) ?? throw new InvalidDataException("a tombstone entry holds null");
        if (payload[0] != TombstoneTag) throw new InvalidDataException($"a tombstone entry starts with tag {payload[0]}");
        if (payload.Length < 19) throw new InvalidDataException($"a tombstone entry of {payload.Length} bytes");
        var outcome = (Decision)payload[1];
        if (outcome is not (Decision.Commit or Decision.Abort)) throw new InvalidDataException($"a tombstone entry with outcome {payload[1]}");
        var hasDeadline = (payload[2] & HasDeadline) != 0;
        if (payload.Length != (hasDeadline ? 27 : 19)) throw new InvalidDataException($"a tombstone entry of {payload.Length} bytes");
        return new DecidedTransaction
        {
            Outcome = outcome,
            DecidedAt = Utc(payload[3..]),
            KeepUntil = Utc(payload[11..]),
            Deadline = hasDeadline ? Utc(payload[19..]) : null,
        };
    }

    public static byte[] EncodePrepared<TWork>(string transactionId, PreparedTransaction<TWork> prepared)
    {
        ArgumentNullException.ThrowIfNull(transactionId);
        ArgumentNullException.ThrowIfNull(prepared);
        if (!IsUtc(prepared.PreparedAt) || !IsUtc(prepared.Deadline))
            return JsonSerializer.SerializeToUtf8Bytes(prepared, StateJson.Options);
        var work = JsonSerializer.SerializeToUtf8Bytes(prepared.Work, StateJson.Options);
        var sameKey = string.Equals(prepared.Coordinator, transactionId, StringComparison.Ordinal);
        var coordinator = sameKey ? [] : Encoding.UTF8.GetBytes(prepared.Coordinator ?? "");
        var payload = new byte[2 + 8 + 8 + (sameKey ? 0 : 4 + coordinator.Length) + work.Length];
        payload[0] = PreparedTag;
        payload[1] = sameKey ? CoordinatorIsTransaction : (byte)0;
        BinaryPrimitives.WriteInt64LittleEndian(payload.AsSpan(2), prepared.PreparedAt.UtcTicks);
        BinaryPrimitives.WriteInt64LittleEndian(payload.AsSpan(10), prepared.Deadline.UtcTicks);
        var at = 18;
        if (!sameKey)
        {
            BinaryPrimitives.WriteInt32LittleEndian(payload.AsSpan(at), coordinator.Length);
            coordinator.CopyTo(payload.AsSpan(at + 4));
            at += 4 + coordinator.Length;
        }
        work.CopyTo(payload.AsSpan(at));
        return payload;
    }

    /// <summary>
    /// Writes the entry <paramref name="payload"/> of map member <paramref name="transactionId"/> as the JSON value the
    /// whole record holds there (what <see cref="StateLayouts.Join"/> builds); <paramref name="prefix"/> names the map.
    /// </summary>
    public static void WriteJson(Utf8JsonWriter json, string prefix, string transactionId, byte[] payload)
    {
        ArgumentNullException.ThrowIfNull(json);
        ArgumentNullException.ThrowIfNull(payload);
        if (payload.Length > 0 && payload[0] == JsonStart)
        {
            json.WriteRawValue(payload, skipInputValidation: true);
            return;
        }
        if (prefix == StateLayouts.DecidedPrefix)
        {
            JsonSerializer.Serialize(json, DecodeTombstone(payload), StateJson.Options);
            return;
        }
        if (prefix != StateLayouts.PreparedPrefix) throw new InvalidDataException($"entry prefix '{prefix}' has no payload form");
        var span = payload.AsSpan();
        if (span.Length < 18 || span[0] != PreparedTag) throw new InvalidDataException($"a prepared entry of {span.Length} bytes starting with tag {(span.IsEmpty ? -1 : span[0])}");
        var sameKey = (span[1] & CoordinatorIsTransaction) != 0;
        var preparedAt = Utc(span[2..]);
        var deadline = Utc(span[10..]);
        var coordinator = transactionId;
        var at = 18;
        if (!sameKey)
        {
            if (span.Length < 22) throw new InvalidDataException($"a prepared entry of {span.Length} bytes");
            var length = BinaryPrimitives.ReadInt32LittleEndian(span[18..]);
            if (length < 0 || length > span.Length - 22) throw new InvalidDataException($"a prepared entry whose coordinator key is {length} bytes long");
            coordinator = Encoding.UTF8.GetString(span.Slice(22, length));
            at = 22 + length;
        }
        if (at == span.Length) throw new InvalidDataException("a prepared entry without its work");
        json.WriteStartObject();
        json.WritePropertyName(nameof(PreparedTransaction<object>.Work));
        json.WriteRawValue(span[at..]);
        json.WriteString(nameof(PreparedTransaction<object>.Coordinator), coordinator);
        json.WriteString(nameof(PreparedTransaction<object>.PreparedAt), preparedAt);
        json.WriteString(nameof(PreparedTransaction<object>.Deadline), deadline);
        json.WriteEndObject();
    }

    private static bool IsUtc(DateTimeOffset time) => time.Offset == TimeSpan.Zero;

    private static DateTimeOffset Utc(ReadOnlySpan<byte> ticks)
    {
        var value = BinaryPrimitives.ReadInt64LittleEndian(ticks);
        if (value < DateTimeOffset.MinValue.UtcTicks || value > DateTimeOffset.MaxValue.UtcTicks)
            throw new InvalidDataException($"an entry holds {value} ticks, outside the calendar");
        return new DateTimeOffset(value, TimeSpan.Zero);
    }
}
