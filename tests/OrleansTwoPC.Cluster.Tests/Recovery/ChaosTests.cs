using System.Diagnostics;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage.Checking;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Recovery;

/// <summary>
/// Seeded chaos on a 3-silo cluster: silo kills and restarts, participants that throw or vote no, and
/// slow participants (some past the prepare timeout), during thousands of concurrent orders. Afterwards
/// the invariant checker reads PostgreSQL directly. The seed is printed; replay or enlarge a run with
/// TWOPC_CHAOS_SEED and TWOPC_CHAOS_ORDERS.
/// </summary>
[Collection(RecoveryCollection.Name)]
public sealed class ChaosTests(RecoveryClusterFixture fixture, ITestOutputHelper output) : ClusterTestBase(fixture)
{
    [Fact]
    public async Task Seeded_chaos_with_silo_kills_and_faulty_participants_keeps_every_invariant()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("TWOPC_CHAOS_SEED"), out var s) ? s : Environment.TickCount & 0xFFFF;
        var total = int.TryParse(Environment.GetEnvironmentVariable("TWOPC_CHAOS_ORDERS"), out var n) ? n : 2000;
        output.WriteLine($"chaos seed {seed}, {total} orders (replay: TWOPC_CHAOS_SEED={seed} TWOPC_CHAOS_ORDERS={total})");
        var random = new Random(seed);

        var skus = new List<string>();
        for (var i = 0; i < 12; i++) skus.Add(await NewSku(i < 3 ? 150 : 2_000));       // 3 hot SKUs run out
        var accounts = new List<string>();
        for (var i = 0; i < 40; i++) accounts.Add(await NewAccount(i % 8 == 0 ? 5_000 : 2_000_000));
        var orders = Enumerable.Range(0, total).Select(_ =>
        {
            var lines = skus.OrderBy(_ => random.Next()).Take(random.Next(1, 3))
                .Select(sku => (sku, random.Next(1, 4), (long)random.Next(100, 1000))).ToArray();
            return Order(accounts[random.Next(accounts.Count)], lines);
        }).ToList();

        // Participant faults, drawn from the seed: ~2% throw, ~2% vote no, ~2% slow (half past the timeout).
        var faults = 0;
        foreach (var order in orders)
        {
            var roll = random.NextDouble();
            if (roll >= 0.06) continue;
            var tx = TransactionIds.FromOrderId(order.OrderId);
            var target = random.Next(3) switch
            {
                0 => $"inventory/{order.Lines[0].Sku}",
                1 => $"payment/{order.AccountId}",
                _ => $"shipment/{order.OrderId}",
            };
            var fault = roll < 0.02 ? ParticipantFault.Throw : roll < 0.04 ? ParticipantFault.VoteNo : ParticipantFault.Hang;
            var hang = TimeSpan.FromMilliseconds(random.Next(2) == 0 ? 300 : 2_500);
            Fixture.InjectFault(target, tx, fault, fault == ParticipantFault.Hang ? hang : default);
            faults++;
        }
        // Silo kills at seeded points of the stream, each followed by a replacement silo.
        var killAt = Enumerable.Range(0, 3).Select(_ => random.Next(total / 10, total * 9 / 10)).OrderBy(x => x).ToList();
        output.WriteLine($"{faults} participant faults; silo kills after orders {string.Join(", ", killAt)}");

        var results = new OrderResult[total];
        var next = -1;
        var placed = 0;
        var clock = Stopwatch.StartNew();
        var callers = Enumerable.Range(0, 32).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < total)
            {
                results[i] = await OrderRunner.PlaceAsync(Grains, orders[i]);
                Interlocked.Increment(ref placed);
            }
        }).ToList();
        var chaos = Task.Run(async () =>
        {
            foreach (var at in killAt)
            {
                while (Volatile.Read(ref placed) < at && Volatile.Read(ref next) < total) await Task.Delay(20);
                var silos = Fixture.Cluster.Silos.ToList();
                var victim = silos[random.Next(silos.Count)];
                output.WriteLine($"{clock.Elapsed.TotalSeconds,6:0.0} s: killing {victim.SiloAddress} after {Volatile.Read(ref placed)} orders");
                await Fixture.Cluster.KillSiloAsync(victim);
                await Fixture.Cluster.StartAdditionalSiloAsync();
            }
        });
        await Task.WhenAll(callers.Append(chaos));
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: stream done; committed {Count(OrderStatus.Committed)}, aborted {Count(OrderStatus.Aborted)}, " +
                         $"in doubt {Count(OrderStatus.InDoubt)}, unavailable {Count(OrderStatus.Unavailable)}, caller errors {results.Count(r => r.Error is not null)}");

        var checker = new InvariantChecker(Fixture.Databases, new InvariantCheckOptions { Skus = skus, Accounts = accounts });
        var report = await checker.WaitUntilQuiescentAsync(TimeSpan.FromSeconds(60));
        output.WriteLine($"{clock.Elapsed.TotalSeconds:0.0} s: {report.ToText()}");
        Assert.True(report.Ok, $"seed {seed}: {report.ToText()}");
        Assert.True(report.ReachedQuiescence, $"seed {seed}: not quiescent");

        // What callers were told is what happened.
        var decisions = (await new StoredStateReader(Fixture.Databases).CoordinatorsAsync(false)).ToDictionary(c => c.Key, c => c.State.Decision);
        foreach (var r in results)
        {
            var decided = decisions.GetValueOrDefault(TransactionIds.FromOrderId(r.Order.OrderId));
            if (r.Outcome?.Status == OrderStatus.Committed) Assert.True(decided == Decision.Commit, $"seed {seed}: {r.Order.OrderId} reported committed, stored {decided}");
            if (r.Outcome?.Status == OrderStatus.Aborted) Assert.True(decided != Decision.Commit, $"seed {seed}: {r.Order.OrderId} reported aborted, stored {decided}");
        }
        Assert.True(Count(OrderStatus.Committed) > total / 4, $"seed {seed}: only {Count(OrderStatus.Committed)} commits");

        int Count(OrderStatus status) => results.Count(r => r.Outcome?.Status == status);
    }
}
