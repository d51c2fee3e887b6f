using CsCheck;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;

namespace OrleansTwoPC.Cluster.Tests.Participants;

/// <summary>
/// Participants defend themselves: prepare and phase two only from inside the cluster, every argument
/// checked before any state is touched, a re-prepare with other content refused, and no deadline (sent or
/// stored) can make a step fail half-way.
/// </summary>
[Collection(ParticipantDefenceCollection.Name)]
public sealed class ParticipantContractTests(ParticipantDefenceFixture fixture) : ClusterTestBase(fixture)
{
    private readonly ParticipantProbe _probe = new(fixture);

    private static ShipmentRequest ShipmentRequest(string sku = "SKU-S") => new("1 Contract Lane", [new OrderLine(sku, 2, 100)]);

    // ---------------------------------------------------------------- cluster only

    [Fact]
    public async Task An_external_client_is_refused_prepare_phase_two_and_resolution_but_keeps_the_admin_operations()
    {
        var sku = new ParticipantId(ParticipantKind.Inventory, await NewSku(10));
        var account = new ParticipantId(ParticipantKind.Payment, await NewAccount(1_000));
        var order = new ParticipantId(ParticipantKind.Shipment, Unique("order"));
        var tx = TransactionIds.FromOrderId(Unique("outside"));
        var deadline = DateTimeOffset.UtcNow.AddSeconds(5);

        var refused = new List<Func<Task>>
        {
            () => Grains.GetGrain<IInventoryGrain>(sku.Key).Prepare(tx, 3, deadline),
            () => Grains.GetGrain<IPaymentAccountGrain>(account.Key).Prepare(tx, 300, deadline),
            () => Grains.GetGrain<IShipmentGrain>(order.Key).Prepare(tx, ShipmentRequest(), deadline),
        };
        foreach (var participant in new[] { sku, account, order })
        {
            var grain = Grains.Participant(participant);
            refused.Add(() => grain.Commit(tx, deadline));
            refused.Add(() => grain.Commit(tx));
            refused.Add(() => grain.Rollback(tx));
            refused.Add(() => grain.ResolveInDoubt(TimeSpan.Zero));
        }
        foreach (var call in refused)
        {
            var error = await Assert.ThrowsAsync<UnauthorizedAccessException>(call);
            Assert.Contains("only from inside the cluster", error.Message);
        }

        foreach (var participant in new[] { sku, account, order })
        {
            Assert.Equal("Unknown", await Grains.Participant(participant).GetTransactionStatus(tx));
            await _probe.AssertActivationEqualsStored(participant, tx);
        }
        Assert.Equal((10L, 0L), ((await Stock(sku.Key)).Committed, (await Stock(sku.Key)).Reserved));
        Assert.False((await _probe.Stored<ShipmentRecord, ShipmentDetails>(order)).Exists);
        // Admin stays open to clients, and the same prepare from inside the cluster is served.
        await Grains.GetGrain<IInventoryGrain>(sku.Key).SetStock(11);
        await Grains.GetGrain<IPaymentAccountGrain>(account.Key).SetBalance(1_100);
        Assert.Equal(11, (await Stock(sku.Key)).Committed);
        Assert.True((await Fixture.InsideCluster.GetGrain<IInventoryGrain>(sku.Key).Prepare(tx, 3, deadline)).Yes);
        await Fixture.InsideCluster.Participant(sku).Rollback(tx);
        Assert.Equal("Aborted", await Grains.Participant(sku).GetTransactionStatus(tx));
    }

    // ---------------------------------------------------------------- arguments

    private enum Bad { TransactionId, Deadline, Amount, ShipmentLine, Address }

    private static readonly Gen<string> BadTransactionIds = Gen.OneOf(
        Gen.Const(""),
        Gen.String[Gen.Char[" \t\n"], 1, 5],
        Gen.Const("tx-"),
        Gen.String[Gen.Char.AlphaNumeric, 1, 30].Where(s => !s.StartsWith("tx-", StringComparison.Ordinal)),
        Gen.Select(Gen.String[Gen.Char.AlphaNumeric, 0, 10], Gen.Char[" /\\'\"é€\0#"], Gen.String[Gen.Char.AlphaNumeric, 0, 10]).Select((a, c, b) => "tx-" + a + c + b),
        Gen.String[Gen.Char.AlphaNumeric, OrderPlan.MaxIdLength + 1, OrderPlan.MaxIdLength + 40].Select(s => "tx-" + s));

    private static readonly Gen<string> BadSkus = Gen.OneOf(
        Gen.Const(""),
        Gen.Const(" "),
        Gen.Select(Gen.String[Gen.Char.AlphaNumeric, 0, 10], Gen.Char[" /'é#"]).Select((a, c) => "S" + a + c),
        Gen.String[Gen.Char.AlphaNumeric, OrderPlan.MaxIdLength + 1, OrderPlan.MaxIdLength + 20]);

    [Fact]
    public async Task Prepares_with_invalid_arguments_vote_no_with_a_reason_and_change_nothing()
    {
        var sku = new ParticipantId(ParticipantKind.Inventory, await NewSku(10));
        var account = new ParticipantId(ParticipantKind.Payment, await NewAccount(1_000));
        var order = new ParticipantId(ParticipantKind.Shipment, Unique("order"));
        var inside = Fixture.InsideCluster;
        var tooFar = Gen.Long[1, TimeSpan.FromDays(3_000_000).Ticks].Select(t => TimeSpan.FromTicks(t));

        var cases = Gen.Select(Gen.Enum<Bad>(), Gen.Int[0, 2], BadTransactionIds, tooFar, Gen.Long[long.MinValue, 0],
            Gen.Select(BadSkus, Gen.Int[int.MinValue, 0], Gen.Bool), Gen.Bool);
        await cases.SampleAsync(async (bad, target, badTx, beyond, amount, line, longAddress) =>
        {
            var tx = bad == Bad.TransactionId ? badTx : TransactionIds.FromOrderId(Unique("bad"));
            var bound = new ProtocolOptions { PrepareTimeout = TwoPcClusterFixture.PrepareTimeout }.MaxPrepareDeadlineAhead;
            var deadline = bad == Bad.Deadline
                ? (DateTimeOffset.MaxValue - DateTimeOffset.UtcNow > bound + beyond ? DateTimeOffset.UtcNow + bound + beyond : DateTimeOffset.MaxValue)
                : DateTimeOffset.UtcNow.AddSeconds(5);
            var (badSku, badQuantity, spoilSku) = line;
            var shipment = bad switch
            {
                Bad.ShipmentLine => new ShipmentRequest("1 Contract Lane", [new OrderLine("SKU-A", 1, 100), spoilSku ? new OrderLine(badSku, 1, 100) : new OrderLine("SKU-B", badQuantity, 100)]),
                Bad.Address => ShipmentRequest() with { Address = longAddress ? new string('a', OrderPlan.MaxAddressLength + 1) : " " },
                _ => ShipmentRequest(),
            };
            // Shipment defects go to the shipment; amounts to a counter; the rest to any participant.
            var participant = bad switch
            {
                Bad.ShipmentLine or Bad.Address => order,
                Bad.Amount => target == 0 ? sku : account,
                _ => new[] { sku, account, order }[target],
            };
            var quantity = bad == Bad.Amount ? amount : 1;

            var vote = participant.Kind switch
            {
                ParticipantKind.Inventory => await inside.GetGrain<IInventoryGrain>(participant.Key).Prepare(tx, quantity, deadline),
                ParticipantKind.Payment => await inside.GetGrain<IPaymentAccountGrain>(participant.Key).Prepare(tx, quantity, deadline),
                _ => await inside.GetGrain<IShipmentGrain>(participant.Key).Prepare(tx, shipment, deadline),
            };

            Assert.False(vote.Yes, $"{bad} at {participant}: {tx} {deadline:O}");
            Assert.False(string.IsNullOrWhiteSpace(vote.Reason));
        }, iter: 60, threads: 1);

        foreach (var participant in new[] { sku, account })
        {
            var (stored, _) = await _probe.Stored<EscrowCounter, long>(participant);
            Assert.Empty(stored.Prepared);
            Assert.Empty(stored.Decided);
            await _probe.AssertActivationEqualsStored(participant, TransactionIds.FromOrderId("x"));
        }
        Assert.Equal((10L, 0L), ((await Stock(sku.Key)).Committed, (await Stock(sku.Key)).Reserved));
        Assert.False((await _probe.Stored<ShipmentRecord, ShipmentDetails>(order)).Exists);
        Assert.False((await Shipment(order.Key)).TentativeOpen);
    }

    [Fact]
    public async Task Phase_two_and_status_calls_with_an_ill_formed_transaction_id_are_contract_errors_that_change_nothing()
    {
        var sku = new ParticipantId(ParticipantKind.Inventory, await NewSku(10));
        var order = new ParticipantId(ParticipantKind.Shipment, Unique("order"));
        await BadTransactionIds.SampleAsync(async tx =>
        {
            foreach (var participant in new[] { sku, order })
            {
                var grain = Fixture.InsideCluster.Participant(participant);
                await Assert.ThrowsAsync<ArgumentException>(() => grain.Rollback(tx));
                await Assert.ThrowsAsync<ArgumentException>(() => grain.Commit(tx));
                // From a client too, where the status query is open.
                await Assert.ThrowsAsync<ArgumentException>(() => Grains.Participant(participant).GetTransactionStatus(tx));
            }
        }, iter: 25, threads: 1);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => Fixture.InsideCluster.Participant(sku).ResolveInDoubt(TimeSpan.FromTicks(-1)));

        var (stored, _) = await _probe.Stored<EscrowCounter, long>(sku);
        Assert.Empty(stored.Decided);
        Assert.False((await _probe.Stored<ShipmentRecord, ShipmentDetails>(order)).Exists);
    }

    // ---------------------------------------------------------------- content and deadlines

    [Fact]
    public async Task A_reprepare_with_another_amount_votes_no_and_keeps_the_first_reservation()
    {
        await Gen.Select(Gen.Long[1, 50], Gen.Long[1, 50]).Where(t => t.Item1 != t.Item2).SampleAsync(async (first, second) =>
        {
            var sku = new ParticipantId(ParticipantKind.Inventory, await NewSku(100));
            var inventory = Fixture.InsideCluster.GetGrain<IInventoryGrain>(sku.Key);
            var tx = TransactionIds.FromOrderId(Unique("again"));
            var deadline = DateTimeOffset.UtcNow.AddSeconds(5);
            Assert.True((await inventory.Prepare(tx, first, deadline)).Yes);

            var other = await inventory.Prepare(tx, second, deadline);

            Assert.False(other.Yes);
            Assert.Contains("other content", other.Reason);
            Assert.Equal(first, (await Stock(sku.Key)).Reserved);
            await _probe.AssertActivationEqualsStored(sku, tx);
            Assert.True((await inventory.Prepare(tx, first, deadline)).Yes);
            await Fixture.InsideCluster.Participant(sku).Rollback(tx);
        }, iter: 8, threads: 1);
    }

    [Fact]
    public async Task A_prepare_whose_deadline_is_the_end_of_the_calendar_votes_no()
    {
        var sku = new ParticipantId(ParticipantKind.Inventory, await NewSku(10));
        var tx = TransactionIds.FromOrderId(Unique("forever"));

        var vote = await Fixture.InsideCluster.GetGrain<IInventoryGrain>(sku.Key).Prepare(tx, 3, DateTimeOffset.MaxValue);

        Assert.False(vote.Yes);
        Assert.Contains("ahead", vote.Reason);
        Assert.Equal(0, (await Stock(sku.Key)).Reserved);
        Assert.Equal("Unknown", await Grains.Participant(sku).GetTransactionStatus(tx));
    }

    /// <summary>
    /// A reservation stored with a deadline at the end of the calendar (as before deadlines were bounded):
    /// its rollback used to overflow after dropping the reservation in memory only, and the next admin write
    /// then stored the loss. Now the rollback goes through and memory and storage agree at every step.
    /// </summary>
    [Fact]
    public async Task A_stored_reservation_with_an_end_of_calendar_deadline_rolls_back_and_memory_never_runs_ahead()
    {
        var sku = new ParticipantId(ParticipantKind.Inventory, Unique("SKU"));
        var tx = TransactionIds.FromOrderId(Unique("forever"));
        await _probe.WriteStored(sku, new ParticipantRecord<EscrowCounter, long>
        {
            Resource = new EscrowCounter { Exists = true, Committed = 10, SuppliedTotal = 10 },
            Prepared = { [tx] = new PreparedTransaction<long> { Work = 4, Coordinator = tx, PreparedAt = DateTimeOffset.UtcNow, Deadline = DateTimeOffset.MaxValue } },
        });
        Assert.Equal(4, (await Stock(sku.Key)).Reserved);

        await Fixture.InsideCluster.Participant(sku).Rollback(tx);

        await _probe.AssertActivationEqualsStored(sku, tx);
        Assert.Equal("Aborted", await Grains.Participant(sku).GetTransactionStatus(tx));
        await Grains.GetGrain<IInventoryGrain>(sku.Key).SetStock(12);
        await _probe.AssertActivationEqualsStored(sku, tx);
        var (stored, _) = await _probe.Stored<EscrowCounter, long>(sku);
        Assert.Equal((12L, 0), (stored.Resource.Committed, stored.Prepared.Count));
        Assert.Equal(Decision.Abort, stored.Decided[tx].Outcome);
    }

    [Fact]
    public async Task Setting_a_counter_past_what_it_can_account_is_a_clear_refusal_that_changes_nothing()
    {
        var sku = await NewSku(long.MaxValue);
        var account = await NewAccount(1_000);
        var order = Order(account, (sku, 1, 100));
        Assert.Equal(OrderStatus.Committed, (await Place(order)).Status);
        await WaitCompleted(order.OrderId);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => Grains.GetGrain<IInventoryGrain>(sku).SetStock(long.MaxValue));

        Assert.Contains("supplied total", error.Message);
        var stock = await Stock(sku);
        Assert.Equal((long.MaxValue - 1, 1L, long.MaxValue), (stock.Committed, stock.ConsumedTotal, stock.SuppliedTotal));
    }
}
