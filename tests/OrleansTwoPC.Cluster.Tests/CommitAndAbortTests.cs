using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains.Faults;

namespace OrleansTwoPC.Cluster.Tests;

[Collection(ClusterCollection.Name)]
public sealed class CommitAndAbortTests(TwoPcClusterFixture fixture) : ClusterTestBase(fixture)
{
    [Fact]
    public async Task Committed_order_changes_all_three_services()
    {
        var red = await NewSku(10);
        var blue = await NewSku(5);
        var account = await NewAccount(10_000);
        var order = Order(account, (red, 3, 1000), (blue, 2, 500));

        var outcome = await Place(order);

        Assert.Equal(OrderStatus.Committed, outcome.Status);
        Assert.Equal(4000, outcome.TotalAmount);
        Assert.All(outcome.Votes, v => Assert.Equal("Yes", v.Vote));
        Assert.Equal(4, outcome.Votes.Count);
        var report = await WaitCompleted(order.OrderId);
        Assert.Equal("Commit", report.Decision);
        Assert.Empty(report.Unacknowledged);

        var redNow = await Stock(red);
        Assert.Equal(7, redNow.Committed);
        Assert.Equal(0, redNow.Reserved);
        Assert.Equal(3, redNow.ConsumedTotal);
        Assert.Equal(3, (await Stock(blue)).Committed);
        var balance = await Balance(account);
        Assert.Equal(6000, balance.Committed);
        Assert.Equal(0, balance.OpenReservations);
        var shipment = await Shipment(order.OrderId);
        Assert.Equal("Confirmed", shipment.Status);
        Assert.Equal(outcome.TransactionId, shipment.TransactionId);
        Assert.Equal("Committed", await Grains.GetGrain<IInventoryGrain>(red).GetTransactionStatus(outcome.TransactionId));
    }

    [Fact]
    public async Task Insufficient_stock_rolls_everything_back()
    {
        var plenty = await NewSku(100);
        var scarce = await NewSku(2);
        var account = await NewAccount(1_000_000);
        var order = Order(account, (plenty, 1, 100), (scarce, 3, 100));

        var outcome = await Place(order);

        Assert.Equal(OrderStatus.Aborted, outcome.Status);
        Assert.Contains("insufficient stock", outcome.Reason);
        Assert.Contains($"inventory/{scarce}", outcome.Reason);
        await WaitCompleted(order.OrderId);
        await AssertUntouched(plenty, 100, account, 1_000_000, order.OrderId);
        Assert.Equal(2, (await Stock(scarce)).Committed);
        Assert.Equal("Aborted", await Grains.GetGrain<IInventoryGrain>(plenty).GetTransactionStatus(outcome.TransactionId));
    }

    [Fact]
    public async Task Insufficient_funds_rolls_everything_back()
    {
        var sku = await NewSku(50);
        var account = await NewAccount(999);
        var order = Order(account, (sku, 2, 500));

        var outcome = await Place(order);

        Assert.Equal(OrderStatus.Aborted, outcome.Status);
        Assert.Contains("insufficient funds", outcome.Reason);
        Assert.Contains(outcome.Votes, v => v.Participant == $"payment/{account}" && v.Vote == "No" && v.Reason!.Contains("available 999"));
        await WaitCompleted(order.OrderId);
        await AssertUntouched(sku, 50, account, 999, order.OrderId);
        // The payment (already active after the coordinator's existence check) may vote no before the
        // shipment grain has even taken its prepare: then the rollback comes first and nothing was held there.
        Assert.Contains((await Shipment(order.OrderId)).Status, new[] { "Cancelled", "None" });
    }

    [Fact]
    public async Task Participant_that_throws_aborts_and_changes_nothing()
    {
        var sku = await NewSku(10);
        var account = await NewAccount(10_000);
        var order = Order(account, (sku, 1, 100));
        Fixture.InjectFault($"payment/{account}", TransactionIds.FromOrderId(order.OrderId), ParticipantFault.Throw);

        var outcome = await Place(order);

        Assert.Equal(OrderStatus.Aborted, outcome.Status);
        Assert.Contains("failed to prepare", outcome.Reason);
        Assert.Contains("InjectedFaultException", outcome.Reason);
        await WaitCompleted(order.OrderId);
        await AssertUntouched(sku, 10, account, 10_000, order.OrderId);
    }

    [Fact]
    public async Task Participant_voting_no_aborts_and_changes_nothing()
    {
        var sku = await NewSku(10);
        var account = await NewAccount(10_000);
        var order = Order(account, (sku, 1, 100));
        Fixture.InjectFault($"shipment/{order.OrderId}", TransactionIds.FromOrderId(order.OrderId), ParticipantFault.VoteNo);

        var outcome = await Place(order);

        Assert.Equal(OrderStatus.Aborted, outcome.Status);
        Assert.Contains($"shipment/{order.OrderId} voted no: injected fault", outcome.Reason);
        await WaitCompleted(order.OrderId);
        await AssertUntouched(sku, 10, account, 10_000, order.OrderId);
    }

    [Fact]
    public async Task Participant_hanging_past_the_timeout_aborts_at_the_deadline_and_its_late_prepare_is_refused()
    {
        var sku = await NewSku(10);
        var account = await NewAccount(10_000);
        var order = Order(account, (sku, 4, 100));
        var hang = TwoPcClusterFixture.PrepareTimeout + TimeSpan.FromSeconds(2);
        Fixture.InjectFault($"inventory/{sku}", TransactionIds.FromOrderId(order.OrderId), ParticipantFault.Hang, hang);

        var clock = System.Diagnostics.Stopwatch.StartNew();
        var outcome = await Place(order);
        var latency = clock.Elapsed;

        Assert.Equal(OrderStatus.Aborted, outcome.Status);
        Assert.Contains("prepare timed out", outcome.Reason);
        Assert.Contains(outcome.Votes, v => v.Participant == $"inventory/{sku}" && v.Vote == "TimedOut");
        // Aborted at the deadline, not after the slow participant woke up.
        Assert.True(latency < hang, $"answered after {latency}, the hang lasts {hang}");
        Assert.True(latency >= TwoPcClusterFixture.PrepareTimeout - TimeSpan.FromMilliseconds(100), $"answered after {latency}");

        // The participant wakes up, refuses its late prepare, then takes the rollback.
        var snapshot = await Eventually(() => Stock(sku), s => s.LatePreparesRefused == 1, TimeSpan.FromSeconds(15));
        Assert.Equal(1, snapshot.LatePreparesRefused);
        await WaitCompleted(order.OrderId);
        await AssertUntouched(sku, 10, account, 10_000, order.OrderId);
        Assert.Equal("Aborted", await Grains.GetGrain<IInventoryGrain>(sku).GetTransactionStatus(outcome.TransactionId));
    }

    [Fact]
    public async Task Prepare_after_rollback_is_refused_and_repeated_decisions_are_no_ops()
    {
        var sku = await NewSku(10);
        // Acting as a coordinator: prepare and phase two are accepted only from inside the cluster.
        var inventory = Fixture.InsideCluster.GetGrain<IInventoryGrain>(sku);
        var tx = "tx-" + Unique("manual");

        // Rollback of a never-prepared transaction is recorded and acknowledged ...
        await inventory.Rollback(tx);
        Assert.Equal("Aborted", await inventory.GetTransactionStatus(tx));
        // ... so the prepare that arrives after it is refused and reserves nothing.
        var vote = await inventory.Prepare(tx, 3, DateTimeOffset.UtcNow.AddSeconds(5));
        Assert.False(vote.Yes);
        Assert.Contains("already rolled back", vote.Reason);
        Assert.Equal(0, (await Stock(sku)).Reserved);

        var account = await NewAccount(1000);
        var order = Order(account, (sku, 2, 100));
        var outcome = await Place(order);
        Assert.Equal(OrderStatus.Committed, outcome.Status);
        await WaitCompleted(order.OrderId);
        // Late duplicates of phase two: no double decrement, no double charge.
        await inventory.Commit(outcome.TransactionId);
        await Fixture.InsideCluster.GetGrain<IPaymentAccountGrain>(account).Commit(outcome.TransactionId);
        Assert.Equal(8, (await Stock(sku)).Committed);
        Assert.Equal(800, (await Balance(account)).Committed);
        // Rollback after commit is a protocol violation and is refused, changing nothing.
        await Assert.ThrowsAnyAsync<Exception>(() => inventory.Rollback(outcome.TransactionId));
        Assert.Equal(8, (await Stock(sku)).Committed);
        // A prepare of another attempt of the committed transaction (as a duplicate coordinator activation
        // would send) is refused and reserves nothing: one transaction is never applied twice.
        var again = await inventory.Prepare(outcome.TransactionId, 2, DateTimeOffset.UtcNow.AddSeconds(5));
        Assert.False(again.Yes);
        Assert.Contains("another attempt", again.Reason);
        Assert.Equal(0, (await Stock(sku)).Reserved);
    }
}
