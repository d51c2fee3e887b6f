using System.Diagnostics;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Checking;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Recovery;

/// <summary>A cluster on a PostgreSQL server of its own, which the test stops and restarts.</summary>
public sealed class OutageClusterFixture : TwoPcClusterFixture
{
    public EmbeddedPostgres Server { get; private set; } = null!;

    protected override string Name => "outage";

    protected override async Task<ServiceDatabases> ProvisionDatabasesAsync()
    {
        Server = await EmbeddedPostgres.StartNewAsync();
        return await PostgresTopology.ProvisionOnServerAsync(Server.AdminConnectionString, "outage");
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        await Server.DisposeAsync();
    }
}

public sealed class StorageOutageTests(OutageClusterFixture fixture, ITestOutputHelper output) : ClusterTestBase(fixture), IClassFixture<OutageClusterFixture>
{
    [Fact]
    public async Task PostgreSQL_stopped_mid_stream_then_restarted_loses_nothing_and_applies_nothing_twice()
    {
        var skus = new[] { await NewSku(400), await NewSku(400), await NewSku(400) };
        var accounts = new[] { await NewAccount(1_000_000), await NewAccount(1_000_000), await NewAccount(1_000_000) };
        var random = new Random(7);
        var orders = Enumerable.Range(0, 240).Select(i => Order(accounts[random.Next(3)], (skus[random.Next(3)], random.Next(1, 3), 100))).ToList();

        var results = new OrderResult[orders.Count];
        var outageResults = new List<OrderResult>();
        var next = -1;
        var stopped = false;
        var clock = Stopwatch.StartNew();
        var callers = Enumerable.Range(0, 8).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < orders.Count)
            {
                var result = await OrderRunner.PlaceAsync(Grains, orders[i]);
                results[i] = result;
                if (Volatile.Read(ref stopped)) lock (outageResults) outageResults.Add(result);
                await Task.Delay(20);
            }
        }).ToList();

        while (Volatile.Read(ref next) < orders.Count / 3) await Task.Delay(20);
        await fixture.Server.StopAsync();
        Volatile.Write(ref stopped, true);
        output.WriteLine($"PostgreSQL stopped at {clock.Elapsed.TotalSeconds:0.0} s after {next} orders");
        await Task.Delay(TimeSpan.FromSeconds(4));
        Volatile.Write(ref stopped, false);
        await fixture.Server.StartAsync();
        Npgsql.NpgsqlConnection.ClearAllPools();
        output.WriteLine($"PostgreSQL restarted at {clock.Elapsed.TotalSeconds:0.0} s");
        await Task.WhenAll(callers);

        // While the database was down, orders failed fast with a clear error instead of hanging.
        Assert.NotEmpty(outageResults);
        Assert.All(outageResults, r => Assert.NotEqual(OrderStatus.Committed, r.Outcome?.Status));
        var slowest = outageResults.Max(r => r.Latency);
        output.WriteLine($"{outageResults.Count} orders during the outage; slowest answer {slowest.TotalMilliseconds:0} ms; e.g. {outageResults[0].Outcome?.Status} {outageResults[0].Outcome?.Reason ?? outageResults[0].Error}");
        Assert.True(slowest < TimeSpan.FromSeconds(5), $"an order took {slowest} during the outage");
        // ... and says why, naming the storage (not "could not find a codec for PostgresException").
        Assert.All(outageResults, r => Assert.Matches("(?i)storage|unavailable|durable", r.Outcome?.Reason ?? r.Error ?? ""));

        // After it returns, everything completes: one outcome per order, nothing lost or applied twice.
        var checker = new InvariantChecker(fixture.Databases, new InvariantCheckOptions { Skus = skus, Accounts = accounts });
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
        output.WriteLine($"committed {results.Count(r => r.Outcome?.Status == OrderStatus.Committed)}, aborted {results.Count(r => r.Outcome?.Status == OrderStatus.Aborted)}, " +
                         $"in doubt {results.Count(r => r.Outcome?.Status == OrderStatus.InDoubt)}, unavailable {results.Count(r => r.Outcome?.Status == OrderStatus.Unavailable)}, errors {results.Count(r => r.Error is not null)}");
    }
}
