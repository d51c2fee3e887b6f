using OrleansTwoPC.Cluster.Tests.Infrastructure;

namespace OrleansTwoPC.Cluster.Tests.Recovery;

/// <summary>Operators' controls: list, timeline, recover now, heuristic abort.</summary>
[Collection(ClusterCollection.Name)]
public sealed class AdminTests(TwoPcClusterFixture fixture) : ClusterTestBase(fixture)
{
    private ITransactionAdminGrain Admin => Grains.GetGrain<ITransactionAdminGrain>(0);

    /// <summary>A reservation whose coordinator never decided (as after a coordinator crash before its decision).</summary>
    private async Task<(string Sku, string Tx)> OrphanedReservation()
    {
        var sku = await NewSku(10);
        var tx = "tx-" + Unique("orphan");
        var vote = await Fixture.InsideCluster.GetGrain<IInventoryGrain>(sku).Prepare(tx, 4, DateTimeOffset.UtcNow.AddSeconds(1));
        Assert.True(vote.Yes);
        return (sku, tx);
    }

    [Fact]
    public async Task Operator_lists_an_in_doubt_transaction_and_heuristically_aborts_it()
    {
        var (sku, tx) = await OrphanedReservation();

        var unfinished = await Admin.ListUnfinished();
        var entry = Assert.Single(unfinished, u => u.TransactionId == tx);
        Assert.Contains("in doubt", entry.State);
        Assert.Contains(entry.Participants, p => p.Participant == $"inventory/{sku}");

        var report = await Admin.HeuristicAbort(tx, "coordinator host lost");

        Assert.Equal("Abort", report.Decision);
        Assert.Contains("heuristic", report.AbortReason);
        var stock = await Stock(sku);
        Assert.Equal(0, stock.Reserved);
        Assert.Equal(10, stock.Committed);
        Assert.DoesNotContain(await Admin.ListUnfinished(), u => u.TransactionId == tx);
        var timeline = await Admin.GetTimeline(tx);
        Assert.True(timeline.Known);
        Assert.Contains(timeline.Events, e => e.What.Contains("heuristic"));
        Assert.Contains(timeline.Events, e => e.Source == $"inventory/{sku}" && e.What == "rolled back");
    }

    [Fact]
    public async Task Heuristic_abort_is_refused_for_a_committed_transaction()
    {
        var sku = await NewSku(10);
        var account = await NewAccount(1000);
        var order = Order(account, (sku, 1, 100));
        Assert.Equal(OrderStatus.Committed, (await Place(order)).Status);
        await WaitCompleted(order.OrderId);

        await Assert.ThrowsAnyAsync<Exception>(() => Admin.HeuristicAbort(order.OrderId, "try"));

        Assert.Equal("Commit", (await Report(order.OrderId)).Decision);
        Assert.Equal(9, (await Stock(sku)).Committed);
        var timeline = await Admin.GetTimeline(order.OrderId);
        Assert.Contains(timeline.Events, e => e.What.StartsWith("decision Commit written"));
        Assert.Contains(timeline.Events, e => e.What.StartsWith("completed"));
    }

    [Fact]
    public async Task Recover_now_settles_an_in_doubt_transaction_without_waiting_for_the_timeout()
    {
        var (sku, tx) = await OrphanedReservation();

        var report = await Admin.Recover(tx);

        Assert.Equal(1, report.InDoubtResolved);
        Assert.Empty(report.Errors);
        Assert.Equal(0, (await Stock(sku)).Reserved);
        // The coordinator made its presumed abort durable: this id can never commit now.
        var coordinator = await Grains.GetGrain<ITransactionCoordinatorGrain>(tx).GetReport();
        Assert.Equal("Abort", coordinator.Decision);
        Assert.Contains("presumed abort", coordinator.AbortReason);
    }

    [Fact]
    public async Task Unknown_transaction_has_an_empty_timeline()
    {
        var timeline = await Admin.GetTimeline("tx-" + Unique("nothing"));
        Assert.False(timeline.Known);
        Assert.Empty(timeline.Events);
    }
}
