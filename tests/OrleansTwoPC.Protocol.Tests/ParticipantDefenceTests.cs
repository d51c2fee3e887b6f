using System.Text.Json;
using CsCheck;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using static OrleansTwoPC.Protocol.Tests.TestSupport;

namespace OrleansTwoPC.Protocol.Tests;

/// <summary>
/// A participant defends its record against whatever a caller sends: malformed work is refused before
/// anything else, a re-prepare with other content is refused and changes nothing, and no stored or sent
/// date can make a step overflow half-way through.
/// </summary>
public sealed class ParticipantDefenceTests
{
    private static readonly DateTimeOffset Deadline = T0.AddSeconds(5);

    private static string Snapshot<TResource, TWork>(ParticipantMachine<TResource, TWork> machine) where TResource : new() =>
        JsonSerializer.Serialize(machine.Record);

    private static readonly Gen<string> Ids = Gen.String[Gen.Char["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"], 1, 20];

    private static readonly Gen<ShipmentDetails> ValidShipments =
        Gen.Select(Ids, Gen.Int[1, 1000].Array[1, 8], Gen.String[Gen.Char.AlphaNumeric, 1, 40])
            .Select((order, quantities, address) => new ShipmentDetails
            {
                OrderId = order,
                Address = address,
                Items = quantities.Select((q, i) => new ShipmentItem { Sku = $"SKU-{i}", Quantity = q }).ToList(),
            });

    private static ParticipantMachine<ShipmentRecord, ShipmentDetails> NewShipment() => new(new ShipmentRules(), null, TimeSpan.FromHours(1));

    // ---------------------------------------------------------------- content of a re-prepare

    [Fact]
    public void Counter_reprepare_of_the_same_attempt_with_another_amount_votes_no_and_changes_nothing()
    {
        Gen.Select(Gen.Long[1, 1_000], Gen.Long[1, 1_000], Ids).Where(t => t.Item1 != t.Item2).Sample((first, second, id) =>
        {
            var tx = "tx-" + id;
            var machine = Counter(10_000);
            Assert.Equal(PrepareCase.Reserved, machine.Prepare(tx, tx, first, Deadline, T0).Case);
            var before = Snapshot(machine);

            var other = machine.Prepare(tx, tx, second, Deadline, T0.AddMilliseconds(1));

            Assert.Equal((PrepareCase.OtherContent, Vote.No), (other.Case, other.Vote));
            Assert.Equal("this transaction is prepared here with other content", other.Reason);
            Assert.False(other.MustPersist);
            Assert.Equal(before, Snapshot(machine));
            // The prepare as it was sent first is still a yes, covering exactly what is reserved.
            Assert.Equal(PrepareCase.AlreadyPrepared, machine.Prepare(tx, tx, first, Deadline, T0.AddMilliseconds(2)).Case);
            Assert.Equal(new[] { first }, machine.ReservedWork);
        });
    }

    [Fact]
    public void Shipment_reprepare_of_the_same_attempt_with_other_lines_or_address_votes_no_and_changes_nothing()
    {
        Gen.Select(ValidShipments, Gen.Int[0, 3], Gen.Int[1, 50]).Sample((details, change, delta) =>
        {
            var machine = NewShipment();
            const string tx = "tx-ship";
            Assert.Equal(PrepareCase.Reserved, machine.Prepare(tx, tx, details, Deadline, T0).Case);
            var before = Snapshot(machine);
            var other = new ShipmentRules().CopyWork(details);
            switch (change)
            {
                case 0: other.Address += "x"; break;
                case 1: other.Items[0].Quantity += delta; break;
                case 2: other.Items.Add(new ShipmentItem { Sku = "SKU-extra", Quantity = delta }); break;
                default: other.Items[^1].Sku += "x"; break;
            }

            var refused = machine.Prepare(tx, tx, other, Deadline, T0.AddMilliseconds(1));

            Assert.Equal((PrepareCase.OtherContent, Vote.No), (refused.Case, refused.Vote));
            Assert.Equal(before, Snapshot(machine));
            Assert.Equal(PrepareCase.AlreadyPrepared, machine.Prepare(tx, tx, new ShipmentRules().CopyWork(details), Deadline, T0.AddMilliseconds(2)).Case);
        });
    }

    // ---------------------------------------------------------------- malformed work

    [Fact]
    public void Non_positive_amounts_are_refused_before_anything_even_for_a_prepared_transaction()
    {
        Gen.Long[long.MinValue, 0].Sample(amount =>
        {
            var machine = Counter(10);
            machine.Prepare("tx-1", "tx-1", 3, Deadline, T0);
            var before = Snapshot(machine);

            var fresh = machine.Prepare("tx-2", "tx-2", amount, Deadline, T0);
            var again = machine.Prepare("tx-1", "tx-1", amount, Deadline, T0);

            Assert.Equal((PrepareCase.Refused, Vote.No), (fresh.Case, fresh.Vote));
            Assert.Equal((PrepareCase.Refused, Vote.No), (again.Case, again.Vote));
            Assert.Contains("must be positive", fresh.Reason);
            Assert.Equal(before, Snapshot(machine));
        });
    }

    [Fact]
    public void Shipment_lines_with_a_non_positive_quantity_a_blank_or_a_repeated_SKU_are_refused()
    {
        Gen.Select(ValidShipments, Gen.Int[0, 2], Gen.Int[int.MinValue, 0]).Sample((details, spoil, quantity) =>
        {
            var line = details.Items[^1];
            switch (spoil)
            {
                case 0: line.Quantity = quantity; break;
                case 1: line.Sku = " "; break;
                default: details.Items.Add(new ShipmentItem { Sku = details.Items[0].Sku, Quantity = 1 }); break;
            }
            var machine = NewShipment();

            var refused = machine.Prepare("tx-1", "tx-1", details, Deadline, T0);

            Assert.Equal((PrepareCase.Refused, Vote.No), (refused.Case, refused.Vote));
            Assert.Empty(machine.Record.Prepared);
            Assert.Equal(ShipmentStatus.None, machine.Record.Resource.Status);
        });
    }

    [Theory]
    [InlineData(0, "shipment line 2 (SKU-B): quantity must be positive, got 0")]
    [InlineData(1, "shipment line 2 has no SKU")]
    [InlineData(2, "shipment line 2: SKU SKU-A appears twice")]
    public void A_refused_shipment_line_is_named_by_its_number_from_one(int spoil, string reason)
    {
        var details = new ShipmentDetails { OrderId = "O-1", Address = "1 Main St", Items = { new ShipmentItem { Sku = "SKU-A", Quantity = 1 }, new ShipmentItem { Sku = "SKU-B", Quantity = 2 } } };
        switch (spoil)
        {
            case 0: details.Items[1].Quantity = 0; break;
            case 1: details.Items[1].Sku = ""; break;
            default: details.Items[1].Sku = "SKU-A"; break;
        }

        var refused = NewShipment().Prepare("tx-1", "tx-1", details, Deadline, T0);

        Assert.Equal((PrepareCase.Refused, reason), (refused.Case, refused.Reason));
    }

    // ---------------------------------------------------------------- date arithmetic

    /// <summary>Deadlines up to the end of the calendar, as a record written before deadlines were bounded may hold.</summary>
    private static readonly Gen<DateTimeOffset> FarDeadlines =
        Gen.Long[DateTimeOffset.MaxValue.Ticks - TimeSpan.FromDays(400).Ticks, DateTimeOffset.MaxValue.Ticks].Select(t => new DateTimeOffset(t, TimeSpan.Zero));

    [Fact]
    public void Decisions_on_a_reservation_whose_deadline_is_at_the_end_of_the_calendar_never_overflow()
    {
        Gen.Select(FarDeadlines, Gen.Int[0, 3]).Sample((deadline, decision) =>
        {
            var machine = Counter(10);
            Assert.Equal(PrepareCase.Reserved, machine.Prepare("tx-1", "tx-1", 3, deadline, T0).Case);
            var later = T0.AddSeconds(1);

            var result = decision switch
            {
                0 => machine.Rollback("tx-1", later),
                1 => machine.Commit("tx-1", later, deadline),
                2 => machine.Resolve("tx-1", Decision.Abort, null, later),
                _ => machine.Resolve("tx-1", Decision.Commit, deadline, later),
            };

            Assert.True(result.MustPersist);
            Assert.Empty(machine.Record.Prepared);
            var tombstone = machine.Record.Decided["tx-1"];
            Assert.True(tombstone.KeepUntil >= deadline);
            Assert.Equal(decision is 1 or 3 ? 7 : 10, machine.Record.Resource.Committed);
            // The durable copy reads back and goes on working.
            var restarted = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("x"), Durable(machine.Record), TimeSpan.FromHours(1));
            Assert.Equal(DecisionCase.Repeated, decision is 1 or 3 ? restarted.Commit("tx-1", later).Case : restarted.Rollback("tx-1", later).Case);
        });
    }

    [Fact]
    public void A_retention_as_long_as_a_TimeSpan_allows_never_overflows()
    {
        Gen.Select(FarDeadlines, Gen.Bool).Sample((deadline, useFarDeadline) =>
        {
            var machine = Counter(10, retention: TimeSpan.MaxValue);
            machine.Prepare("tx-1", "tx-1", 3, useFarDeadline ? deadline : Deadline, T0);
            Assert.Equal(DecisionCase.Released, machine.Rollback("tx-1", T0).Case);
            Assert.Equal(DecisionCase.RecordedUnknownRollback, machine.Rollback("tx-2", T0).Case);
            Assert.Equal(DateTimeOffset.MaxValue, machine.Record.Decided["tx-2"].KeepUntil);
        });
    }

    // ---------------------------------------------------------------- admin arithmetic

    [Fact]
    public void Setting_a_counter_past_what_its_supplied_total_can_account_is_refused_before_anything_changes()
    {
        Gen.Select(Gen.Long[1, long.MaxValue], Gen.Long[0, long.MaxValue]).Sample((consumed, value) =>
        {
            var counter = new EscrowCounter { Exists = true, Committed = 0, ConsumedTotal = consumed, SuppliedTotal = consumed };
            var problem = counter.CheckSetByAdministrator(value);
            var fits = (Int128)value + consumed <= long.MaxValue;
            Assert.Equal(fits, problem is null);
            if (fits)
            {
                counter.SetByAdministrator(value);
                Assert.Equal(counter.Committed + counter.ConsumedTotal, counter.SuppliedTotal);
            }
        });
        Assert.NotNull(new EscrowCounter().CheckSetByAdministrator(-1));
    }

    [Fact]
    public void Setting_a_counter_to_zero_is_allowed_and_a_negative_value_is_refused_with_its_reason()
    {
        var counter = new EscrowCounter { Exists = true, Committed = 7, SuppliedTotal = 7 };
        Assert.Null(counter.CheckSetByAdministrator(0));
        Assert.Equal("cannot be negative, got -1", counter.CheckSetByAdministrator(-1));
    }

    [Fact]
    public void The_supplied_total_may_reach_exactly_the_largest_long_and_counts_what_is_already_committed()
    {
        // Supplied after the change = supplied + value - committed: exactly long.MaxValue still fits.
        var counter = new EscrowCounter { Exists = true, Committed = 10, ConsumedTotal = long.MaxValue - 15, SuppliedTotal = long.MaxValue - 5 };
        Assert.Null(counter.CheckSetByAdministrator(15));
        var past = counter.CheckSetByAdministrator(16);
        Assert.Equal($"16 would bring the supplied total (committed plus the {long.MaxValue - 15} consumed) past what this counter can account ({long.MaxValue})", past);

        counter.SetByAdministrator(15);
        Assert.Equal((15L, long.MaxValue), (counter.Committed, counter.SuppliedTotal));
    }

    [Fact]
    public void Counter_arithmetic_never_wraps_an_overflow_throws_and_changes_nothing()
    {
        // Callers that skip the checks (a record from an older version, a bypassed admin check) must not wrap.
        var admin = new EscrowCounter { Exists = true, Committed = 0, SuppliedTotal = long.MaxValue };
        Assert.Throws<OverflowException>(() => admin.SetByAdministrator(1));
        Assert.Equal((0L, long.MaxValue, true), (admin.Committed, admin.SuppliedTotal, admin.Exists));

        var rules = new EscrowRules("insufficient stock");
        var consumed = new EscrowCounter { Exists = true, Committed = 10, ConsumedTotal = long.MaxValue - 1 };
        Assert.Throws<OverflowException>(() => rules.Apply(consumed, 5, "tx-1", T0));
        Assert.Equal((10L, long.MaxValue - 1), (consumed.Committed, consumed.ConsumedTotal));

        var committed = new EscrowCounter { Exists = true, Committed = long.MinValue + 1, ConsumedTotal = 0 };
        Assert.Throws<OverflowException>(() => rules.Apply(committed, 5, "tx-1", T0));
        Assert.Equal((long.MinValue + 1, 0L), (committed.Committed, committed.ConsumedTotal));
    }

    // ---------------------------------------------------------------- the prepare deadline bound

    [Fact]
    public void The_deadline_bound_defaults_to_four_prepare_timeouts_and_follows_the_prepare_timeout()
    {
        Assert.Equal(TimeSpan.FromSeconds(20), new ProtocolOptions().MaxPrepareDeadlineAhead);
        Gen.Long[1, TimeSpan.FromDays(1).Ticks].Sample(ticks =>
        {
            var options = new ProtocolOptions { PrepareTimeout = TimeSpan.FromTicks(ticks), DecisionRetention = TimeSpan.FromTicks(ticks * 2) };
            Assert.Equal(TimeSpan.FromTicks(ticks * ProtocolOptions.DefaultDeadlineAheadFactor), options.MaxPrepareDeadlineAhead);
            options.Validate();
        });
        Assert.Equal(TimeSpan.MaxValue, new ProtocolOptions { PrepareTimeout = TimeSpan.MaxValue }.MaxPrepareDeadlineAhead);
    }

    [Fact]
    public void A_configured_deadline_bound_must_exceed_the_prepare_timeout()
    {
        var options = new ProtocolOptions { MaxPrepareDeadlineAhead = TimeSpan.FromSeconds(7) };
        Assert.Equal(TimeSpan.FromSeconds(7), options.MaxPrepareDeadlineAhead);
        options.Validate();
        options.MaxPrepareDeadlineAhead = options.PrepareTimeout;
        Assert.Contains("MaxPrepareDeadlineAhead", Assert.Throws<ArgumentException>(options.Validate).Message);
    }

    [Fact]
    public void A_deadline_further_ahead_than_the_bound_is_refused_anywhere_in_the_calendar()
    {
        var options = new ProtocolOptions();
        var anyTime = Gen.Long[DateTimeOffset.MinValue.Ticks, DateTimeOffset.MaxValue.Ticks].Select(t => new DateTimeOffset(t, TimeSpan.Zero));
        Gen.Select(anyTime, anyTime).Sample((now, deadline) =>
        {
            var problem = options.CheckPrepareDeadline(deadline, now);
            Assert.Equal(deadline - now > options.MaxPrepareDeadlineAhead, problem is not null);
        });
        Assert.NotNull(options.CheckPrepareDeadline(DateTimeOffset.MaxValue, T0));
        Assert.Null(options.CheckPrepareDeadline(T0 + options.MaxPrepareDeadlineAhead, T0));
        Assert.Contains("ahead", options.CheckPrepareDeadline(T0 + options.MaxPrepareDeadlineAhead + TimeSpan.FromTicks(1), T0));
    }
}
