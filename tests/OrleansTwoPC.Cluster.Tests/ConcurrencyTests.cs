using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Silo.Demo;

namespace OrleansTwoPC.Cluster.Tests;

[Collection(ClusterCollection.Name)]
public sealed class ConcurrencyTests(TwoPcClusterFixture fixture) : ClusterTestBase(fixture)
{
    [Fact]
    public async Task Concurrent_orders_on_hot_skus_never_oversell_and_stay_all_or_nothing()
    {
        const int orders = 600, callers = 32;
        var random = new Random(42);
        var skus = new[] { Unique("HOT"), Unique("HOT"), Unique("HOT") };
        var accounts = Enumerable.Range(0, 24).Select(_ => Unique("acct")).ToList();
        // Stock covers roughly a third of the demand; every sixth account can afford only a few orders.
        var catalogue = new Catalogue(
            skus.ToDictionary(s => s, _ => 150L),
            accounts.Select((a, i) => (a, i)).ToDictionary(x => x.a, x => x.i % 6 == 0 ? 2_000L : 1_000_000L));
        await catalogue.SeedAsync(Grains);
        var requests = Enumerable.Range(0, orders).Select(i => new OrderRequest(
            Unique("conc"),
            skus.OrderBy(_ => random.Next()).Take(random.Next(1, 4)).Select(s => new OrderLine(s, random.Next(1, 4), random.Next(100, 900))).ToList(),
            accounts[random.Next(accounts.Count)],
            $"{i} Concurrency Road")).ToList();

        var results = await OrderRunner.RunAsync(Grains, requests, callers);

        Assert.All(results, r => Assert.Null(r.Error));
        var committed = results.Count(r => r.Outcome!.Status == OrderStatus.Committed);
        var aborted = results.Count(r => r.Outcome!.Status == OrderStatus.Aborted);
        Assert.Equal(orders, committed + aborted);
        Assert.InRange(committed, 50, orders - 50); // stock must have run out part-way
        Assert.Contains(results, r => r.Outcome!.Reason?.Contains("insufficient stock") == true);
        Assert.Contains(results, r => r.Outcome!.Reason?.Contains("insufficient funds") == true);

        var check = await Reconciliation.CheckAsync(Grains, catalogue, results, TimeSpan.FromSeconds(30));
        Assert.True(check.Ok, string.Join(Environment.NewLine, check.Violations));
        foreach (var sku in skus)
        {
            var s = await Stock(sku);
            Assert.True(s.Committed >= 0);
            Assert.Equal(150, s.Committed + s.ConsumedTotal);
        }
    }
}
