using System.Text.Json;
using CsCheck;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Batching;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>
/// <see cref="EntryCodec"/>: every tombstone and prepared transaction comes back exactly, through the record a read
/// joins; entries written as JSON are still read; a damaged header is refused.
/// </summary>
public sealed class EntryCodecTests
{
    private static readonly Gen<DateTimeOffset> Times = Gen.Select(
        Gen.Long[DateTimeOffset.MinValue.UtcTicks + TimeSpan.TicksPerDay, DateTimeOffset.MaxValue.UtcTicks - TimeSpan.TicksPerDay],
        Gen.Frequency((4, Gen.Const(0)), (1, Gen.Int[-14 * 60, 14 * 60])),
        (ticks, offsetMinutes) => new DateTimeOffset(ticks, TimeSpan.Zero).ToOffset(TimeSpan.FromMinutes(offsetMinutes)));

    // Opaque ids: any text a key may hold (no NUL, no lone surrogate), short or long.
    private static readonly Gen<string> Ids = Gen.String[Gen.Char.Where(c => c != '\0' && !char.IsSurrogate(c)), 1, 80];

    private static readonly Gen<DecidedTransaction> Tombstones = Gen.Select(
        Gen.Bool.Select(commit => commit ? Decision.Commit : Decision.Abort), Times, Times, Gen.Bool, Times,
        (outcome, decidedAt, keepUntil, hasDeadline, deadline) => new DecidedTransaction
        {
            Outcome = outcome,
            DecidedAt = decidedAt,
            KeepUntil = keepUntil,
            Deadline = hasDeadline ? deadline : null,
        });

    [Fact]
    public void Every_tombstone_comes_back_exactly_and_in_at_most_27_bytes_when_its_times_are_utc()
    {
        Tombstones.Sample(tombstone =>
        {
            var payload = EntryCodec.EncodeTombstone(tombstone);
            var back = EntryCodec.DecodeTombstone(payload);
            Assert.Equal(tombstone.Outcome, back.Outcome);
            Assert.True(tombstone.DecidedAt.EqualsExact(back.DecidedAt));
            Assert.True(tombstone.KeepUntil.EqualsExact(back.KeepUntil));
            Assert.Equal(tombstone.Deadline is null, back.Deadline is null);
            if (tombstone.Deadline is { } deadline) Assert.True(deadline.EqualsExact(back.Deadline!.Value));
            var utc = tombstone.DecidedAt.Offset == TimeSpan.Zero && tombstone.KeepUntil.Offset == TimeSpan.Zero && tombstone.Deadline?.Offset is null or { Ticks: 0 };
            if (utc) Assert.True(payload.Length <= 27, $"{payload.Length} B");
            else Assert.Equal((byte)'{', payload[0]);
        });
    }

    [Fact]
    public void Every_prepared_transaction_comes_back_exactly_through_the_joined_record()
    {
        var works = Gen.Select(Ids, Ids, Gen.Select(Ids, Gen.Int[1, 1000], (sku, quantity) => new ShipmentItem { Sku = sku, Quantity = quantity }).List[0, 4],
            (order, address, items) => new ShipmentDetails { OrderId = order, Address = address, Items = items });
        Gen.Select(Ids, Gen.Select(Gen.Bool, Ids, (same, other) => same ? null : other), Times, Times, works).Sample((id, coordinator, preparedAt, deadline, work) =>
        {
            var prepared = new PreparedTransaction<ShipmentDetails> { Work = work, Coordinator = coordinator ?? id, PreparedAt = preparedAt, Deadline = deadline };
            var payload = EntryCodec.EncodePrepared(id, prepared);

            var record = JsonSerializer.Deserialize<ParticipantRecord<ShipmentRecord, ShipmentDetails>>(
                StateLayouts.Join("{}"u8.ToArray(), new Dictionary<string, byte[]> { [StateLayouts.PreparedPrefix + id] = payload }), StateJson.Options)!;
            var back = Assert.Single(record.Prepared);
            Assert.Equal(id, back.Key);
            Assert.Equal(prepared.Coordinator, back.Value.Coordinator);
            Assert.True(prepared.PreparedAt.EqualsExact(back.Value.PreparedAt));
            Assert.True(prepared.Deadline.EqualsExact(back.Value.Deadline));
            Assert.Equal(JsonSerializer.Serialize(work, StateJson.Options), JsonSerializer.Serialize(back.Value.Work, StateJson.Options));
        });
    }

    [Fact]
    public void A_counter_reservation_whose_coordinator_is_its_transaction_takes_19_bytes()
    {
        var id = $"tx-{Guid.NewGuid():N}";
        var now = DateTimeOffset.UtcNow;
        var payload = EntryCodec.EncodePrepared(id, new PreparedTransaction<long> { Work = 3, Coordinator = id, PreparedAt = now, Deadline = now.AddSeconds(5) });
        Assert.Equal(19, payload.Length);
        var json = JsonSerializer.SerializeToUtf8Bytes(new PreparedTransaction<long> { Work = 3, Coordinator = id, PreparedAt = now, Deadline = now.AddSeconds(5) }, StateJson.Options);
        Assert.True(json.Length > 5 * payload.Length, $"JSON {json.Length} B");
    }

    [Fact]
    public void Entries_written_as_json_are_read_as_before_beside_binary_ones()
    {
        var now = DateTimeOffset.UtcNow;
        var (oldId, newId, preparedId) = ($"tx-{Guid.NewGuid():N}", $"tx-{Guid.NewGuid():N}", $"tx-{Guid.NewGuid():N}");
        var oldTombstone = new DecidedTransaction { Outcome = Decision.Abort, DecidedAt = now, KeepUntil = now.AddSeconds(30) };
        var newTombstone = new DecidedTransaction { Outcome = Decision.Commit, DecidedAt = now, KeepUntil = now.AddSeconds(31), Deadline = now.AddSeconds(1) };
        var oldPrepared = new PreparedTransaction<long> { Work = 7, Coordinator = "someone-else", PreparedAt = now, Deadline = now.AddSeconds(5) };
        var rows = new Dictionary<string, byte[]>
        {
            [StateLayouts.DecidedPrefix + oldId] = JsonSerializer.SerializeToUtf8Bytes(oldTombstone, StateJson.Options),
            [StateLayouts.DecidedPrefix + newId] = EntryCodec.EncodeTombstone(newTombstone),
            [StateLayouts.PreparedPrefix + preparedId] = JsonSerializer.SerializeToUtf8Bytes(oldPrepared, StateJson.Options),
        };

        var record = JsonSerializer.Deserialize<ParticipantRecord<EscrowCounter, long>>(StateLayouts.Join("{}"u8.ToArray(), rows), StateJson.Options)!;

        Assert.Equal(Decision.Abort, record.Decided[oldId].Outcome);
        Assert.True(record.Decided[oldId].KeepUntil.EqualsExact(oldTombstone.KeepUntil));
        Assert.True(record.Decided[newId].Deadline!.Value.EqualsExact(newTombstone.Deadline!.Value));
        Assert.Equal(7, record.Prepared[preparedId].Work);
        Assert.Equal("someone-else", record.Prepared[preparedId].Coordinator);
        Assert.Equal(Decision.Abort, EntryCodec.DecodeTombstone(rows[StateLayouts.DecidedPrefix + oldId]).Outcome);
    }

    [Theory]
    [InlineData(new byte[] { })]
    [InlineData(new byte[] { 9, 1, 0 })]
    [InlineData(new byte[] { 1, 1, 0, 1, 2, 3 })]
    [InlineData(new byte[] { 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    [InlineData(new byte[] { 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    [InlineData(new byte[] { 1, 1, 0, 255, 255, 255, 255, 255, 255, 255, 127, 0, 0, 0, 0, 0, 0, 0, 0 })]
    public void A_damaged_tombstone_is_refused_clearly(byte[] payload)
    {
        Assert.Throws<InvalidDataException>(() => EntryCodec.DecodeTombstone(payload));
        using var json = new Utf8JsonWriter(new MemoryStream());
        Assert.Throws<InvalidDataException>(() => EntryCodec.WriteJson(json, StateLayouts.DecidedPrefix, "tx", payload));
    }

    [Theory]
    [InlineData(new byte[] { 2, 1, 0 })]
    [InlineData(new byte[] { 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 })]
    [InlineData(new byte[] { 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 50, 0, 0, 0, (byte)'1' })]
    [InlineData(new byte[] { 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, (byte)'1' })]
    public void A_damaged_reservation_is_refused_clearly(byte[] payload)
    {
        using var json = new Utf8JsonWriter(new MemoryStream());
        Assert.Throws<InvalidDataException>(() => EntryCodec.WriteJson(json, StateLayouts.PreparedPrefix, "tx", payload));
    }
}
