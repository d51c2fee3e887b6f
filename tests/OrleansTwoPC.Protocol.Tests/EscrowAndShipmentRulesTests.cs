using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using static OrleansTwoPC.Protocol.Tests.TestSupport;

namespace OrleansTwoPC.Protocol.Tests;

/// <summary>The business rules behind the participants: escrow counters (stock, money) and one shipment per order.</summary>
public sealed class EscrowAndShipmentRulesTests
{
    private static readonly DateTimeOffset Deadline = T0.AddSeconds(5);

    // ---------------------------------------------------------------- escrow

    [Fact]
    public void Escrow_ManyConcurrentReservationsOnOneHotCounter_WhileAvailabilityLasts()
    {
        var sku = Counter(10);

        Assert.Equal(PrepareCase.Reserved, sku.Prepare("t1", "t1", 4, Deadline, T0).Case);
        Assert.Equal(PrepareCase.Reserved, sku.Prepare("t2", "t2", 4, Deadline, T0).Case);
        var refused = sku.Prepare("t3", "t3", 3, Deadline, T0);
        Assert.Equal(PrepareCase.Refused, refused.Case);
        Assert.Contains("available 2", refused.Reason);
        Assert.Equal(PrepareCase.Reserved, sku.Prepare("t4", "t4", 2, Deadline, T0).Case);
        Assert.Equal(0, EscrowRules.Available(sku.Record.Resource, sku.ReservedWork));
        Assert.Equal(PrepareCase.Refused, sku.Prepare("t5", "t5", 1, Deadline, T0).Case);
        Assert.Equal(10, sku.Record.Resource.Committed); // prepares never touch the committed value

        sku.Commit("t1", T0.AddSeconds(1));
        sku.Rollback("t2", T0.AddSeconds(1));
        Assert.Equal((6L, 4L), (sku.Record.Resource.Committed, sku.Record.Resource.ConsumedTotal));
        Assert.Equal(4, EscrowRules.Available(sku.Record.Resource, sku.ReservedWork)); // 6 - t4's 2
        Assert.Equal(PrepareCase.Reserved, sku.Prepare("t3", "t3", 3, Deadline, T0.AddSeconds(2)).Case); // fits again

        sku.Commit("t4", T0.AddSeconds(3));
        sku.Commit("t3", T0.AddSeconds(3));
        Assert.Equal((1L, 9L), (sku.Record.Resource.Committed, sku.Record.Resource.ConsumedTotal));
        Assert.Equal(10, sku.Record.Resource.Committed + sku.Record.Resource.ConsumedTotal);
    }

    [Fact]
    public void Escrow_ExactlyTheAvailableAmount_CanBeReserved()
    {
        var sku = Counter(5);
        Assert.Equal(PrepareCase.Reserved, sku.Prepare("t1", "t1", 5, Deadline, T0).Case);
        sku.Commit("t1", T0);
        Assert.Equal(0, sku.Record.Resource.Committed);
        Assert.Equal(PrepareCase.Refused, sku.Prepare("t2", "t2", 1, Deadline, T0).Case);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-3)]
    public void Escrow_NonPositiveAmount_IsRefused(long amount)
    {
        var sku = Counter(10);
        var refused = sku.Prepare("t1", "t1", amount, Deadline, T0);
        Assert.Equal(PrepareCase.Refused, refused.Case);
        Assert.Contains("must be positive", refused.Reason);
        Assert.Empty(sku.Record.Prepared);
    }

    [Fact]
    public void Escrow_Rules_CheckAvailabilityAgainstOpenReservations()
    {
        var rules = new EscrowRules("insufficient funds");
        var counter = new EscrowCounter { Exists = true, Committed = 100 };
        Assert.Null(rules.CheckReserve(counter, new long[] { 30, 20 }, 50));
        Assert.Equal("insufficient funds: requested 51, available 50", rules.CheckReserve(counter, new long[] { 30, 20 }, 51));
        Assert.Equal("unknown resource", rules.CheckReserve(new EscrowCounter { Committed = 100 }, Array.Empty<long>(), 1));
        Assert.Equal(50, EscrowRules.Available(counter, new long[] { 30, 20 }));

        rules.Apply(counter, 30, "t", T0);
        Assert.Equal((70L, 30L), (counter.Committed, counter.ConsumedTotal));
        rules.Release(counter, 20, "t2", T0);
        Assert.Equal((70L, 30L), (counter.Committed, counter.ConsumedTotal)); // release never touches committed
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    [InlineData(5)]
    public void Escrow_UnderRandomInterleavings_CommittedNeverNegative_AndReservationsNeverExceedIt(int seed)
    {
        var random = new Random(seed);
        const long initial = 50;
        var sku = Counter(initial);
        var open = new List<string>();
        long committedWork = 0;
        for (var step = 0; step < 2_000; step++)
        {
            var now = T0.AddMilliseconds(step);
            switch (random.Next(3))
            {
                case 0:
                    var tx = $"t{step}";
                    var amount = random.Next(1, 15);
                    var before = EscrowRules.Available(sku.Record.Resource, sku.ReservedWork);
                    var result = sku.Prepare(tx, tx, amount, now.AddSeconds(5), now);
                    Assert.Equal(amount <= before, result.Case == PrepareCase.Reserved);
                    if (result.Case == PrepareCase.Reserved) open.Add(tx);
                    break;
                case 1 when open.Count > 0:
                    var commit = open[random.Next(open.Count)];
                    committedWork += sku.Record.Prepared[commit].Work;
                    sku.Commit(commit, now);
                    sku.Commit(commit, now); // repeated
                    open.Remove(commit);
                    break;
                case 2 when open.Count > 0:
                    var rollback = open[random.Next(open.Count)];
                    sku.Rollback(rollback, now);
                    sku.Rollback(rollback, now);
                    open.Remove(rollback);
                    break;
            }
            var counter = sku.Record.Resource;
            Assert.True(counter.Committed >= 0, $"seed {seed} step {step}: committed {counter.Committed}");
            Assert.True(sku.ReservedWork.Sum() <= counter.Committed, $"seed {seed} step {step}: reserved {sku.ReservedWork.Sum()} > committed {counter.Committed}");
            Assert.Equal(initial, counter.Committed + counter.ConsumedTotal);
            Assert.Equal(committedWork, counter.ConsumedTotal);
        }
    }

    // ---------------------------------------------------------------- administrator adjustments (supply)

    [Fact]
    public void SetByAdministrator_SeedsTheCounter_AndAccountsItAsSupply()
    {
        var counter = new EscrowCounter();
        Assert.False(counter.Exists);

        counter.SetByAdministrator(10);

        Assert.True(counter.Exists);
        Assert.Equal((10L, 0L, 10L), (counter.Committed, counter.ConsumedTotal, counter.SuppliedTotal));
    }

    [Fact]
    public void SetByAdministrator_AccumulatesAdjustments_UpAndDown()
    {
        var counter = new EscrowCounter();
        counter.SetByAdministrator(10);

        counter.SetByAdministrator(15);
        Assert.Equal((15L, 15L), (counter.Committed, counter.SuppliedTotal));

        counter.SetByAdministrator(5);
        Assert.Equal((5L, 5L), (counter.Committed, counter.SuppliedTotal));

        counter.SetByAdministrator(5);
        Assert.Equal((5L, 5L), (counter.Committed, counter.SuppliedTotal));

        counter.SetByAdministrator(0);
        Assert.Equal((0L, 0L), (counter.Committed, counter.SuppliedTotal));
        Assert.True(counter.Exists);
    }

    [Fact]
    public void SetByAdministrator_KeepsConservation_AcrossCommits()
    {
        var sku = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("insufficient stock"), null, TimeSpan.FromHours(1));
        var counter = sku.Record.Resource;
        void Conserved() => Assert.Equal(counter.SuppliedTotal, counter.Committed + counter.ConsumedTotal);

        counter.SetByAdministrator(10);
        Conserved();
        sku.Prepare("t1", "t1", 3, Deadline, T0);
        sku.Commit("t1", T0, Deadline);
        Assert.Equal((7L, 3L, 10L), (counter.Committed, counter.ConsumedTotal, counter.SuppliedTotal));
        Conserved();

        // Restock to 20: 13 more supplied, consumption untouched.
        counter.SetByAdministrator(20);
        Assert.Equal((20L, 3L, 23L), (counter.Committed, counter.ConsumedTotal, counter.SuppliedTotal));
        Conserved();

        sku.Prepare("t2", "t2", 6, Deadline, T0);
        sku.Prepare("t3", "t3", 4, Deadline, T0);
        sku.Commit("t2", T0, Deadline);
        sku.Rollback("t3", T0);
        Conserved();

        // Stock count finds 2 fewer than expected: negative supply.
        counter.SetByAdministrator(counter.Committed - 2);
        Assert.Equal((12L, 9L, 21L), (counter.Committed, counter.ConsumedTotal, counter.SuppliedTotal));
        Conserved();

        // Through storage too.
        var restarted = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("insufficient stock"), Durable(sku.Record), TimeSpan.FromHours(1));
        Assert.Equal((12L, 9L, 21L), (restarted.Record.Resource.Committed, restarted.Record.Resource.ConsumedTotal, restarted.Record.Resource.SuppliedTotal));
    }

    // ---------------------------------------------------------------- shipment

    private static ShipmentDetails Details(string address = "1 Main St") => new()
    {
        OrderId = "ORDER-1",
        Address = address,
        Items = { new ShipmentItem { Sku = "SKU-1", Quantity = 2 } },
    };

    private static ParticipantMachine<ShipmentRecord, ShipmentDetails> Shipment() => new(new ShipmentRules(), null, TimeSpan.FromHours(1));

    [Fact]
    public void Shipment_TentativeThenConfirmed()
    {
        var shipment = Shipment();
        var details = Details();

        Assert.Equal(PrepareCase.Reserved, shipment.Prepare("t1", "t1", details, Deadline, T0).Case);
        // Tentative: lives only as a prepared transaction, invisible in the committed record.
        Assert.Equal(ShipmentStatus.None, shipment.Record.Resource.Status);
        Assert.Null(shipment.Record.Resource.TransactionId);
        Assert.Same(details, Assert.Single(shipment.ReservedWork));

        Assert.Equal(DecisionCase.Applied, shipment.Commit("t1", T0.AddSeconds(1)).Case);

        var confirmed = shipment.Record.Resource;
        Assert.Equal(ShipmentStatus.Confirmed, confirmed.Status);
        Assert.Equal("t1", confirmed.TransactionId);
        Assert.Equal("1 Main St", confirmed.Details!.Address);
        Assert.Equal(T0.AddSeconds(1), confirmed.ChangedAt);
        Assert.Empty(shipment.ReservedWork);
    }

    [Fact]
    public void Shipment_RolledBack_IsCancelled()
    {
        var shipment = Shipment();
        shipment.Prepare("t1", "t1", Details(), Deadline, T0);

        Assert.Equal(DecisionCase.Released, shipment.Rollback("t1", T0.AddSeconds(1)).Case);

        Assert.Equal(ShipmentStatus.Cancelled, shipment.Record.Resource.Status);
        Assert.Equal("t1", shipment.Record.Resource.TransactionId);
        Assert.Equal(T0.AddSeconds(1), shipment.Record.Resource.ChangedAt);
        Assert.Empty(shipment.ReservedWork);
    }

    [Fact]
    public void Shipment_ASecondTransaction_IsRefusedWhileOneIsTentative()
    {
        var shipment = Shipment();
        shipment.Prepare("t1", "t1", Details(), Deadline, T0);

        var second = shipment.Prepare("t2", "t2", Details("2 Other Rd"), Deadline, T0);

        Assert.Equal((PrepareCase.Refused, Vote.No), (second.Case, second.Vote));
        Assert.Contains("another transaction holds a tentative shipment", second.Reason);
        Assert.Equal(ParticipantTransactionStatus.Unknown, shipment.StatusOf("t2"));
        // The first one is unaffected and can still be confirmed.
        shipment.Commit("t1", T0);
        Assert.Equal(("t1", "1 Main St"), (shipment.Record.Resource.TransactionId, shipment.Record.Resource.Details!.Address));
    }

    [Fact]
    public void Shipment_ASecondTransaction_IsRefusedAfterConfirmation()
    {
        var shipment = Shipment();
        shipment.Prepare("t1", "t1", Details(), Deadline, T0);
        shipment.Commit("t1", T0);

        var second = shipment.Prepare("t2", "t2", Details("2 Other Rd"), Deadline, T0);

        Assert.Equal(PrepareCase.Refused, second.Case);
        Assert.Contains("already confirmed by t1", second.Reason);
        Assert.Equal("1 Main St", shipment.Record.Resource.Details!.Address);
    }

    [Fact]
    public void Shipment_RepeatedPrepareAndCommit_AreNoOps()
    {
        var shipment = Shipment();
        shipment.Prepare("t1", "t1", Details(), Deadline, T0);
        Assert.Equal(PrepareCase.AlreadyPrepared, shipment.Prepare("t1", "t1", Details(), Deadline, T0).Case);
        shipment.Commit("t1", T0.AddSeconds(1));
        Assert.Equal(DecisionCase.Repeated, shipment.Commit("t1", T0.AddSeconds(2)).Case);
        Assert.Equal(PrepareCase.AlreadyCommitted, shipment.Prepare("t1", "t1", Details(), Deadline, T0).Case);
        Assert.Equal(T0.AddSeconds(1), shipment.Record.Resource.ChangedAt);
    }

    [Theory]
    [InlineData("")]
    [InlineData("   ")]
    public void Shipment_BlankAddress_IsRefused(string address)
    {
        var refused = Shipment().Prepare("t1", "t1", Details(address), Deadline, T0);
        Assert.Equal(PrepareCase.Refused, refused.Case);
        Assert.Contains("address is blank", refused.Reason);
    }

    [Fact]
    public void Shipment_NothingToShip_IsRefused()
    {
        var empty = new ShipmentDetails { OrderId = "ORDER-1", Address = "1 Main St" };
        var refused = Shipment().Prepare("t1", "t1", empty, Deadline, T0);
        Assert.Equal(PrepareCase.Refused, refused.Case);
        Assert.Contains("nothing to ship", refused.Reason);
    }

    [Fact]
    public void Shipment_RecordRoundTripsThroughJson()
    {
        var shipment = Shipment();
        shipment.Prepare("t1", "t1", Details(), Deadline, T0);
        var restarted = new ParticipantMachine<ShipmentRecord, ShipmentDetails>(new ShipmentRules(), Durable(shipment.Record), TimeSpan.FromHours(1));
        Assert.Equal(PrepareCase.Refused, restarted.Prepare("t2", "t2", Details(), Deadline, T0).Case);
        restarted.Commit("t1", T0);
        Assert.Equal(2, restarted.Record.Resource.Details!.Items.Single().Quantity);
    }
}
