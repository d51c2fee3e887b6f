using System.Diagnostics;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Cluster.Tests.Recovery;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage.Checking;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Performance;

/// <summary>
/// PostgreSQL stops while a stream of orders keeps one hot SKU's shared writes busy: every transaction
/// whose shared write failed is answered without a commit, the SKU reloads once the database is back, and
/// after recovery every order is all-or-nothing with the SKU's stock conserved.
/// </summary>
public sealed class GroupCommitOutageTests(OutageClusterFixture fixture, ITestOutputHelper output) : ClusterTestBase(fixture), IClassFixture<OutageClusterFixture>
{
    [Fact]
    public async Task PostgreSQL_stopped_during_batched_writes_on_a_hot_SKU_then_restarted_loses_nothing()
    {
        const long initialStock = 10_000;
        var sku = await NewSku(initialStock);
        var accounts = new[] { await NewAccount(100_000_000), await NewAccount(100_000_000), await NewAccount(100_000_000), await NewAccount(100_000_000) };
        // Enough orders that the stream still runs when the stop (about a second of pg_ctl) has taken effect.
        var orders = Enumerable.Range(0, 1200).Select(i => Order(accounts[i % accounts.Length], (sku, 1 + i % 2, 100))).ToList();

        var results = new OrderResult[orders.Count];
        var outageResults = new List<OrderResult>();
        var next = -1;
        var stopped = false;
        var clock = Stopwatch.StartNew();
        var callers = Enumerable.Range(0, 16).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < orders.Count)
            {
                var result = await OrderRunner.PlaceAsync(Grains, orders[i]);
                results[i] = result;
                if (Volatile.Read(ref stopped)) lock (outageResults) outageResults.Add(result);
            }
        }).ToList();

        while (Volatile.Read(ref next) < 100) await Task.Delay(10);
        await fixture.Server.StopAsync();
        Volatile.Write(ref stopped, true);
        output.WriteLine($"PostgreSQL stopped at {clock.Elapsed.TotalSeconds:0.0} s after {next} orders");
        await Task.Delay(TimeSpan.FromSeconds(3));
        Volatile.Write(ref stopped, false);
        await fixture.Server.StartAsync();
        Npgsql.NpgsqlConnection.ClearAllPools();
        output.WriteLine($"PostgreSQL restarted at {clock.Elapsed.TotalSeconds:0.0} s");
        await Task.WhenAll(callers);

        int Count(OrderStatus status) => results.Count(r => r.Outcome?.Status == status);
        output.WriteLine($"committed {Count(OrderStatus.Committed)}, aborted {Count(OrderStatus.Aborted)}, in doubt {Count(OrderStatus.InDoubt)}, " +
                         $"errors {results.Count(r => r.Error is not null)}; {outageResults.Count} answered during the outage, e.g. {outageResults.FirstOrDefault()?.Outcome?.Reason ?? outageResults.FirstOrDefault()?.Error}");
        // An answer can trail its durable decision: a batch that committed as the server began to stop is answered
        // after the stop returned. Only an order already in flight then (one per caller) can be such a commit, and
        // every committed answer is checked against the databases below; every other answer is a storage failure.
        var lateCommits = outageResults.Count(r => r.Outcome?.Status == OrderStatus.Committed);
        Assert.True(lateCommits <= 16, $"{lateCommits} orders answered committed while PostgreSQL was down");
        var failedDuringOutage = outageResults.Where(r => r.Outcome?.Status != OrderStatus.Committed).ToList();
        Assert.NotEmpty(failedDuringOutage);
        Assert.All(failedDuringOutage, r => Assert.Matches("(?i)storage|unavailable|durable", r.Outcome?.Reason ?? r.Error ?? ""));

        // The hot SKU reloaded its record after the failed writes: it takes new orders again.
        var after = Order(accounts[0], (sku, 1, 100));
        await Retrying(async () => Assert.Equal(OrderStatus.Committed, (await Place(after)).Status));

        var checker = new InvariantChecker(fixture.Databases, new InvariantCheckOptions { Skus = new[] { sku }, Accounts = accounts });
        var report = await checker.WaitUntilQuiescentAsync(TimeSpan.FromSeconds(45));
        output.WriteLine(report.ToText());
        Assert.True(report.Ok, report.ToText());

        var reader = new StoredStateReader(fixture.Databases);
        var decisions = (await reader.CoordinatorsAsync(false)).ToDictionary(c => c.Key, c => c.State.Decision);
        foreach (var r in results)
        {
            var tx = TransactionIds.FromOrderId(r.Order.OrderId);
            if (r.Outcome?.Status == OrderStatus.Committed) Assert.Equal(Decision.Commit, decisions[tx]);
            if (r.Outcome?.Status == OrderStatus.Aborted) Assert.NotEqual(Decision.Commit, decisions.GetValueOrDefault(tx));
        }
        var soldByCommits = orders.Append(after)
            .Where(o => decisions.GetValueOrDefault(TransactionIds.FromOrderId(o.OrderId)) == Decision.Commit)
            .Sum(o => (long)o.Lines.Single().Quantity);
        var stored = (await reader.InventoryAsync(false, sku)).Single().State;
        Assert.Empty(stored.Prepared);
        Assert.Equal((initialStock - soldByCommits, soldByCommits), (stored.Resource.Committed, stored.Resource.ConsumedTotal));
    }
}
