using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains;
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

        await AssertLeftMemory(orders.Select(o => o.OrderId).Concat(transactions).ToHashSet(), transactions);

        // Reactivated from their records, they answer as before.
        Assert.Equal("Confirmed", (await Shipment(committed[0].OrderId)).Status);
        // The aborted order's shipment was rolled back, or never prepared if the abort came first.
        Assert.Contains((await Shipment(aborted.OrderId)).Status, new[] { "Cancelled", "None" });
        Assert.Equal(OrderStatus.Committed, (await Place(committed[0])).Status);
        Assert.Equal(OrderStatus.Aborted, (await Place(aborted)).Status);
        Assert.Equal(15, (await Stock(sku)).Committed);
    }

    [Fact]
    public async Task Asked_by_recovery_after_completion_they_leave_memory_again()
    {
        var sku = await NewSku(5);
        var account = await NewAccount(1_000_000);
        var order = Order(account, (sku, 1, 100));
        Assert.Equal(OrderStatus.Committed, (await Place(order)).Status);
        var tx = TransactionIds.FromOrderId(order.OrderId);
        var keys = new HashSet<string> { order.OrderId, tx };
        var reader = new StoredStateReader(Fixture.Databases);
        await Eventually(async () => (await reader.CoordinatorAsync(tx)).Single().State.IsCompleted, done => done, TimeSpan.FromSeconds(30));
        await AssertLeftMemory(keys, new HashSet<string> { tx });

        // As a sweep asks that listed them while they were still at work: they are activated from their records ...
        var shipment = Fixture.InsideCluster.Participant(new ParticipantId(ParticipantKind.Shipment, order.OrderId));
        Assert.Equal(0, await shipment.ResolveInDoubt(TimeSpan.Zero));
        var coordinator = Fixture.InsideCluster.GetGrain<ITransactionCoordinatorGrain>(tx);
        Assert.Equal(InquiryReply.Commit, (await coordinator.QueryOutcome()).Decision);
        await coordinator.Recover();
        // ... and leave again instead of staying for Orleans' idle time (15 minutes).
        await AssertLeftMemory(keys, new HashSet<string> { tx });
    }

    private async Task AssertLeftMemory(IReadOnlySet<string> keys, IReadOnlySet<string> transactions)
    {
        var reader = new StoredStateReader(Fixture.Databases);
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
    }
}
