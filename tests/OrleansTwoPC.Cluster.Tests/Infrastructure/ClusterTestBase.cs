using CsCheck;
using OrleansTwoPC.Silo.Demo;

namespace OrleansTwoPC.Cluster.Tests.Infrastructure;

/// <summary>Helpers for tests on the shared cluster: unique ids, seeding, placing orders, waiting for phase two.</summary>
public abstract class ClusterTestBase(TwoPcClusterFixture fixture)
{
    private static int _counter;

    protected TwoPcClusterFixture Fixture { get; } = fixture;
    protected IGrainFactory Grains => Fixture.Grains;

    /// <summary>An id no other test uses (the cluster and its databases are shared by the collection).</summary>
    protected static string Unique(string prefix) => $"{prefix}-{Interlocked.Increment(ref _counter)}-{Guid.NewGuid():N}"[..Math.Min(60, prefix.Length + 30)];

    protected async Task<string> NewSku(long stock)
    {
        var sku = Unique("SKU");
        await Retrying(() => Grains.GetGrain<IInventoryGrain>(sku).SetStock(stock));
        return sku;
    }

    protected async Task<string> NewAccount(long balance)
    {
        var account = Unique("acct");
        await Retrying(() => Grains.GetGrain<IPaymentAccountGrain>(account).SetBalance(balance));
        return account;
    }

    /// <summary>
    /// After a silo was killed the test client may still pick its gateway until it learns the silo is
    /// gone: retry calls that failed to connect (these idempotent setup calls are safe to repeat).
    /// </summary>
    protected static async Task Retrying(Func<Task> call)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await call();
                return;
            }
            catch (Exception ex) when (attempt < 20 && ex is Orleans.Runtime.Messaging.ConnectionFailedException or SiloUnavailableException or TimeoutException)
            {
                await Task.Delay(500);
            }
        }
    }

    protected static OrderRequest Order(string account, params (string Sku, int Quantity, long Price)[] lines) =>
        new(Unique("order"), lines.Select(l => new OrderLine(l.Sku, l.Quantity, l.Price)).ToList(), account, "1 Test Street, Testville");

    protected Task<OrderOutcome> Place(OrderRequest order) =>
        Grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(order.OrderId)).PlaceOrder(order);

    protected Task<CounterSnapshot> Stock(string sku) => Grains.GetGrain<IInventoryGrain>(sku).GetSnapshot();
    protected Task<CounterSnapshot> Balance(string account) => Grains.GetGrain<IPaymentAccountGrain>(account).GetSnapshot();
    protected Task<ShipmentSnapshot> Shipment(string orderId) => Grains.GetGrain<IShipmentGrain>(orderId).GetSnapshot();
    protected Task<TransactionReport> Report(string orderId) =>
        Grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(orderId)).GetReport();

    /// <summary>Waits until the coordinator recorded every participant's acknowledgement.</summary>
    protected async Task<TransactionReport> WaitCompleted(string orderId, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(15));
        while (true)
        {
            var report = await Report(orderId);
            if (report.Phase == "Completed") return report;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"transaction of {orderId} not completed: phase {report.Phase}, unacknowledged {string.Join(",", report.Unacknowledged)}");
            await Task.Delay(50);
        }
    }

    /// <summary>
    /// For every sample of <see cref="GeneratedIds.Families"/>: each id is a SKU, an account and an order of its own;
    /// every order commits and changes exactly its own resources. Then the invariant checker is clean and the
    /// state reader finds each id under its own key. Returns the ids.
    /// </summary>
    protected async Task<IReadOnlyList<string>> OrdersOverGeneratedIds(int samples, Xunit.Abstractions.ITestOutputHelper output)
    {
        var ids = new List<string>();
        await GeneratedIds.Families.SampleAsync(async family =>
        {
            for (var i = 0; i < family.Length; i++)
            {
                await Grains.GetGrain<IInventoryGrain>(family[i]).SetStock(100 + i);
                await Grains.GetGrain<IPaymentAccountGrain>(family[i]).SetBalance(10_000 + i);
            }
            var outcomes = await Task.WhenAll(family.Select((id, i) => Place(new OrderRequest(id, [new OrderLine(id, i + 1, 10)], id, $"address of {id}"))));
            foreach (var outcome in outcomes) Assert.True(outcome.Status == OrderStatus.Committed, $"{outcome.OrderId}: {outcome.Status} {outcome.Reason}");
            // The answer comes once the decision is durable; the stock changes with phase two.
            foreach (var id in family) await WaitCompleted(id);
            for (var i = 0; i < family.Length; i++)
            {
                var id = family[i];
                Assert.Equal(100 + i - (i + 1), (await Stock(id)).Committed);
                Assert.Equal(10_000 + i - (i + 1) * 10, (await Balance(id)).Committed);
                var shipment = await Shipment(id);
                Assert.Equal(("Confirmed", $"address of {id}"), (shipment.Status, shipment.Address));
            }
            lock (ids) ids.AddRange(family);
        }, iter: samples, threads: 1);

        var checker = new OrleansTwoPC.Storage.Checking.InvariantChecker(Fixture.Databases);
        Assert.Equal(0, await Eventually(async () => (await checker.FindLeftoversAsync()).Count, n => n == 0, TimeSpan.FromSeconds(20)));
        var report = await checker.CheckAsync();
        output.WriteLine($"{ids.Count} generated ids, e.g. {string.Join(" ", ids.Take(8))}; checker: {report.ToText()}");
        Assert.True(report.Ok, report.ToText());
        var stored = (await new OrleansTwoPC.Storage.Records.StoredStateReader(Fixture.Databases).InventoryAsync(false)).Select(s => s.Key).ToList();
        Assert.Equal(stored.Count, stored.Distinct(StringComparer.Ordinal).Count());
        Assert.Superset(ids.ToHashSet(StringComparer.Ordinal), stored.ToHashSet(StringComparer.Ordinal));
        return ids;
    }

    protected static async Task<T> Eventually<T>(Func<Task<T>> read, Func<T, bool> done, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var value = await read();
            if (done(value) || DateTime.UtcNow > deadline) return value;
            await Task.Delay(50);
        }
    }

    protected async Task AssertUntouched(string sku, long stock, string account, long balance, string orderId)
    {
        var s = await Stock(sku);
        Assert.Equal(stock, s.Committed);
        Assert.Equal(0, s.Reserved);
        Assert.Equal(0, s.ConsumedTotal);
        var a = await Balance(account);
        Assert.Equal(balance, a.Committed);
        Assert.Equal(0, a.Reserved);
        Assert.Equal(0, a.ConsumedTotal);
        var shipment = await Shipment(orderId);
        Assert.NotEqual("Confirmed", shipment.Status);
        Assert.False(shipment.TentativeOpen);
    }
}
