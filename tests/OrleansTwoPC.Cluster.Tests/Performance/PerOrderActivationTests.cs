using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Cluster.Tests.Performance;

/// <summary>
/// The grains that exist once per order (its coordinator and its shipment) leave memory when their work is
/// done instead of staying for Orleans' idle time; what they know stays in their records, so a later
/// question or a resubmission is answered the same.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class PerOrderActivationTests(TwoPcClusterFixture fixture) : ClusterTestBase(fixture)
{
    [Fact]
    public async Task Coordinator_and_shipment_deactivate_once_their_order_is_complete()
    {
        var sku = await NewSku(20);
        var account = await NewAccount(1_000_000);
        var committed = Enumerable.Range(0, 5).Select(_ => Order(account, (sku, 1, 100))).ToList();
        var aborted = Order(account, (sku, 1_000, 100)); // more than the stock: aborts after the prepares
        foreach (var order in committed) Assert.Equal(OrderStatus.Committed, (await Place(order)).Status);
        Assert.Equal(OrderStatus.Aborted, (await Place(aborted)).Status);
        var orders = committed.Append(aborted).ToList();
        var transactions = orders.Select(o => TransactionIds.FromOrderId(o.OrderId)).ToHashSet();

        // Completion read from the database: asking the coordinators would activate them.
        var reader = new StoredStateReader(Fixture.Databases);
        var unfinished = await Eventually(
            async () => (await reader.CoordinatorsAsync(unfinishedOnly: false)).Count(c => transactions.Contains(c.Key) && !c.State.IsCompleted),
            n => n == 0, TimeSpan.FromSeconds(30));
        Assert.Equal(0, unfinished);

        var keys = orders.Select(o => o.OrderId).Concat(transactions).ToHashSet();
        var management = Grains.GetGrain<IManagementGrain>(0);
        var remaining = await Eventually(
            async () => (await management.GetDetailedGrainStatistics()).Where(s => keys.Contains(s.GrainId.Key.ToString()!)).Select(s => s.GrainId.ToString()).ToList(),
            active => active.Count == 0, TimeSpan.FromSeconds(60));
        if (remaining.Count > 0)
        {
            // What the stored records say about the grains still activated, to tell a lost deactivation from a reactivation.
            var stored = (await reader.CoordinatorsAsync(unfinishedOnly: false)).Where(c => transactions.Contains(c.Key))
                .Select(c => $"{c.Key}: {c.State.Decision} completed {c.State.CompletedAt:HH:mm:ss.fff}");
            Assert.Fail($"still activated after completion at {DateTime.UtcNow:HH:mm:ss.fff}: {string.Join(", ", remaining)}; records: {string.Join("; ", stored)}");
        }

        // Reactivated from their records, they answer as before.
        Assert.Equal("Confirmed", (await Shipment(committed[0].OrderId)).Status);
        // The aborted order's shipment was rolled back, or never prepared if the abort came first.
        Assert.Contains((await Shipment(aborted.OrderId)).Status, new[] { "Cancelled", "None" });
        Assert.Equal(OrderStatus.Committed, (await Place(committed[0])).Status);
        Assert.Equal(OrderStatus.Aborted, (await Place(aborted)).Status);
        Assert.Equal(15, (await Stock(sku)).Committed);
    }
}
