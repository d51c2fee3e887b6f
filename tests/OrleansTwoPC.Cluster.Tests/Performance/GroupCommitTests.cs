using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using Orleans.TestingHost;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains.Coordinator;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage.Checking;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Performance;

/// <summary>
/// Group commit on participants: many transactions' prepares and commits on one hot SKU share one state
/// write, each still durable before its vote or acknowledgement; a failed shared write fails every
/// transaction that waited on it, and the grain reloads and goes on.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class GroupCommitTests(TwoPcClusterFixture fixture, ITestOutputHelper output) : ClusterTestBase(fixture)
{
    private const int Orders = 64;

    [Fact]
    public async Task Concurrent_orders_on_one_hot_SKU_share_its_state_writes_and_conserve_stock()
    {
        var sku = await NewSku(1_000);
        var accounts = new[] { await NewAccount(10_000_000), await NewAccount(10_000_000), await NewAccount(10_000_000), await NewAccount(10_000_000) };
        var orders = Enumerable.Range(0, Orders).Select(i => Order(accounts[i % accounts.Length], (sku, 1 + i % 3, 250))).ToList();
        // Activate each order's coordinator and shipment beforehand, so the prepares reach the SKU together.
        await Task.WhenAll(orders.Select(o => Report(o.OrderId)));
        await Task.WhenAll(orders.Select(o => Shipment(o.OrderId)));
        var reader = new StoredStateReader(Fixture.Databases);
        var before = await SkuVersion(reader, sku);

        var results = await Task.WhenAll(orders.Select(o => OrderRunner.PlaceAsync(Grains, o)));
        foreach (var order in orders) await WaitCompleted(order.OrderId);

        // All commit; on an overloaded machine a prepare may miss the 2 s deadline, which aborts cleanly.
        Assert.All(results, r => Assert.True(r.Outcome?.Status == OrderStatus.Committed || r.Outcome?.Reason?.Contains("prepare timed out") == true,
            $"{r.Outcome?.Status} {r.Outcome?.Reason ?? r.Error}"));
        var committed = results.Where(r => r.Outcome!.Status == OrderStatus.Committed).Select(r => r.Order).ToList();
        Assert.True(committed.Count >= Orders * 3 / 4, $"only {committed.Count} of {Orders} committed");
        var writes = await SkuVersion(reader, sku) - before;
        var units = committed.Sum(o => o.Lines.Sum(l => (long)l.Quantity));
        output.WriteLine($"{Orders} orders ({committed.Count} committed, {units} units) on one SKU: {writes} state writes of the SKU, " +
                         $"against {2 * Orders} with one write per prepare and per commit (or rollback)");
        // One write per prepare and per commit would be 2N; sharing writes must make it far fewer.
        Assert.True(writes <= Orders, $"{writes} writes of the hot SKU for {Orders} orders: not shared");

        var stock = await Stock(sku);
        Assert.Equal(1_000 - units, stock.Committed);
        Assert.Equal(units, stock.ConsumedTotal);
        Assert.Equal(0, stock.Reserved);
        var stored = (await reader.InventoryAsync(false, sku)).Single().State;
        Assert.Equal((stock.Committed, stock.ConsumedTotal), (stored.Resource.Committed, stored.Resource.ConsumedTotal));
        Assert.Empty(stored.Prepared);
        Assert.All(committed, o => Assert.Equal(Decision.Commit, stored.Decided[TransactionIds.FromOrderId(o.OrderId)].Outcome));
        var check = await new InvariantChecker(Fixture.Databases, new InvariantCheckOptions { Skus = new[] { sku }, Accounts = accounts })
            .WaitUntilQuiescentAsync(TimeSpan.FromSeconds(30));
        Assert.True(check.Ok, check.ToText());
    }

    /// <summary>
    /// The SKU's row is rewritten behind the grain's back (as a stale duplicate activation would), so the
    /// grain's next versioned write fails. A slow prepare holds the SKU while the orders' prepares queue up;
    /// those that join the failing write, or the write after it, fail with it (their coordinators abort). The
    /// rest were held back because those writes were full (<see cref="ProtocolOptions.MaxStepsPerWrite"/>): they
    /// step after the grain has reloaded its record, and commit (on a loaded machine some reach it after their
    /// prepare deadline and are refused). Nothing is lost or applied twice.
    /// </summary>
    [Fact]
    public async Task A_failed_shared_write_fails_every_transaction_waiting_on_it_and_the_grain_reloads_and_recovers()
    {
        const int orders = 24;
        var sku = await NewSku(1_000);
        var account = await NewAccount(100_000_000);
        // Acting as a coordinator: prepare and rollback are accepted only from inside the cluster.
        var inventory = Fixture.InsideCluster.GetGrain<IInventoryGrain>(sku);
        var reader = new StoredStateReader(Fixture.Databases);
        await BumpVersionBehindTheGrain(sku);

        var requests = Enumerable.Range(0, orders).Select(_ => Order(account, (sku, 2, 100))).ToList();
        // Activate each order's coordinator and shipment beforehand, so the prepares reach the SKU at once.
        await Task.WhenAll(requests.Select(o => Report(o.OrderId)));
        await Task.WhenAll(requests.Select(o => Shipment(o.OrderId)));
        // Every silo's coordinators know the SKU and account exist (as after their first orders), so the
        // prepares are the first requests of these orders to reach the SKU, not existence checks.
        foreach (var silo in Fixture.Cluster.Silos.OfType<InProcessSiloHandle>())
        {
            var existing = silo.SiloHost.Services.GetRequiredService<ExistingResourceCache>();
            existing.Add(new ParticipantId(ParticipantKind.Inventory, sku));
            existing.Add(new ParticipantId(ParticipantKind.Payment, account));
        }

        // A prepare sent straight to the SKU, held for a while by an injected hang: the SKU serves nothing else meanwhile.
        var slowTx = "tx-" + Unique("slow");
        // 1.5 s: room for 24 coordinators to reach the SKU on a busy machine, and less than their 2 s prepare timeout.
        Fixture.InjectFault($"inventory/{sku}", slowTx, ParticipantFault.Hang, TimeSpan.FromMilliseconds(1500));
        var slow = inventory.Prepare(slowTx, 1, DateTimeOffset.UtcNow.AddSeconds(5));
        await Task.Delay(100);
        var results = await Task.WhenAll(requests.Select(o => OrderRunner.PlaceAsync(Grains, o)));
        await Assert.ThrowsAsync<InconsistentStateException>(() => slow);
        Fixture.RemoveFault($"inventory/{sku}", slowTx);
        await inventory.Rollback(slowTx);

        var failed = results.Where(r => r.Outcome?.Status == OrderStatus.Aborted).ToList();
        var committed = results.Where(r => r.Outcome?.Status == OrderStatus.Committed).ToList();
        output.WriteLine($"{failed.Count} of {orders} orders failed with the shared writes, {committed.Count} stepped after the reload; e.g. {failed.FirstOrDefault()?.Outcome?.Reason}");
        Assert.Equal(orders, failed.Count + committed.Count);
        // Only the steps in the failing write and the one after it fail with it (on a loaded machine the others may
        // still reach the SKU after their deadline, below).
        Assert.InRange(failed.Count(r => r.Outcome!.Reason!.Contains(nameof(InconsistentStateException), StringComparison.Ordinal)), 1, 2 * new ProtocolOptions().MaxStepsPerWrite);
        // Each failed because of the SKU's write: the version conflict itself, or (on a loaded machine) that
        // failure came back only after the coordinator's prepare deadline, or the prepare waiting behind it and
        // the reload was taken only after its deadline.
        Assert.All(failed, r => Assert.Contains($"inventory/{sku}", r.Outcome!.Reason));
        Assert.All(failed, r => Assert.Matches($"failed to prepare: {nameof(InconsistentStateException)}|prepare timed out|prepare arrived \\d+ ms after its deadline", r.Outcome!.Reason!));
        Assert.Contains(failed, r => r.Outcome!.Reason!.Contains($"failed to prepare: {nameof(InconsistentStateException)}"));

        // The grain reloaded: a new order on it commits, and concurrent ones share writes again.
        var after = Enumerable.Range(0, 8).Select(_ => Order(account, (sku, 1, 100))).ToList();
        var afterResults = await Task.WhenAll(after.Select(o => OrderRunner.PlaceAsync(Grains, o)));
        Assert.All(afterResults, r => Assert.Equal(OrderStatus.Committed, r.Outcome?.Status));
        foreach (var order in requests.Concat(after)) await WaitCompleted(order.OrderId);

        var consumed = 2L * committed.Count + after.Count;
        var stock = await Stock(sku);
        Assert.Equal((1_000L - consumed, consumed, 0L), (stock.Committed, stock.ConsumedTotal, stock.Reserved));
        var stored = (await reader.InventoryAsync(false, sku)).Single().State;
        Assert.Equal((1_000L - consumed, consumed), (stored.Resource.Committed, stored.Resource.ConsumedTotal));
        Assert.Empty(stored.Prepared);
        Assert.All(failed, r => Assert.NotEqual(Decision.Commit, stored.Decided.GetValueOrDefault(TransactionIds.FromOrderId(r.Order.OrderId))?.Outcome));
        Assert.All(committed, r => Assert.Equal(Decision.Commit, stored.Decided[TransactionIds.FromOrderId(r.Order.OrderId)].Outcome));
        var check = await new InvariantChecker(Fixture.Databases, new InvariantCheckOptions { Skus = new[] { sku }, Accounts = new[] { account } })
            .WaitUntilQuiescentAsync(TimeSpan.FromSeconds(30));
        Assert.True(check.Ok, check.ToText());
    }

    private static async Task<int> SkuVersion(StoredStateReader reader, string sku) => (await reader.InventoryAsync(false, sku)).Single().Version;

    /// <summary>Rewrites the SKU's stored record unchanged with the next version, so the active grain's ETag is stale.</summary>
    private async Task BumpVersionBehindTheGrain(string sku)
    {
        var silo = (InProcessSiloHandle)Fixture.Cluster.Silos[0];
        var storage = silo.SiloHost.Services.GetRequiredKeyedService<IGrainStorage>(OrleansTwoPC.Grains.StorageNames.Inventory);
        var grainId = GrainId.Create("inventory", sku);
        var state = new GrainState<ParticipantRecord<EscrowCounter, long>>();
        await storage.ReadStateAsync(StateNames.Inventory, grainId, state);
        Assert.True(state.RecordExists);
        await storage.WriteStateAsync(StateNames.Inventory, grainId, state);
    }
}
