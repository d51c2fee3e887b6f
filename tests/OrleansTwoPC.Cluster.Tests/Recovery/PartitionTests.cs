using System.Diagnostics;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains.Faults;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Recovery;

/// <summary>What a partition between a coordinator and a participant does, simulated with the fault seam.</summary>
[Collection(ClusterCollection.Name)]
public sealed class PartitionTests(TwoPcClusterFixture fixture, ITestOutputHelper output) : ClusterTestBase(fixture)
{
    /// <summary>
    /// The decision is durable and the caller answered; one participant cannot be reached. It stays
    /// prepared (its reservation blocks that stock) for as long as the partition lasts, the coordinator
    /// keeps retrying with capped backoff, and an operator sees the transaction as unfinished. Once the
    /// partition heals the next retry delivers and nothing is left behind.
    /// </summary>
    [Fact]
    public async Task Participant_cut_off_after_the_decision_blocks_only_its_reservation_until_the_partition_heals()
    {
        var sku = await NewSku(10);
        var account = await NewAccount(5000);
        var order = Order(account, (sku, 4, 100));
        var tx = TransactionIds.FromOrderId(order.OrderId);
        Fixture.InjectFault($"inventory/{sku}", tx, ParticipantFault.Unreachable);

        var outcome = await Place(order);
        Assert.Equal(OrderStatus.Committed, outcome.Status);

        // During the partition: the other services committed; the cut-off SKU still holds the reservation.
        await Task.Delay(1500);
        var during = await Stock(sku);
        Assert.Equal(10, during.Committed);
        Assert.Equal(4, during.Reserved);
        Assert.Equal(6, during.Available);
        Assert.Equal(5000 - 400, (await Balance(account)).Committed);
        var unfinished = await Grains.GetGrain<ITransactionAdminGrain>(0).ListUnfinished();
        var seen = Assert.Single(unfinished, u => u.TransactionId == tx);
        output.WriteLine($"operator sees: {seen.State}, {string.Join("; ", seen.Participants.Select(p => $"{p.Participant} {p.Reason}"))}");
        Assert.Contains(seen.Participants, p => p.Participant == $"inventory/{sku}" && p.Reason == "not acknowledged");

        var healed = Stopwatch.StartNew();
        Fixture.RemoveFault($"inventory/{sku}", tx);
        await WaitCompleted(order.OrderId, TimeSpan.FromSeconds(10));
        output.WriteLine($"delivered {healed.ElapsedMilliseconds} ms after the partition healed (retry backoff capped at 1 s in tests)");
        var after = await Stock(sku);
        Assert.Equal(6, after.Committed);
        Assert.Equal(0, after.Reserved);
    }
}
