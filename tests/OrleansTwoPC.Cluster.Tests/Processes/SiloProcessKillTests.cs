using System.Collections.Concurrent;
using System.Diagnostics;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Processes;

/// <summary>Runs alone (never beside the in-process cluster fixtures): it starts and kills OS processes.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SiloProcessCollection
{
    public const string Name = "silo processes with real process death";
}

/// <summary>
/// Real process death: the product's silo executable runs in two OS processes, an order stream runs
/// through an ordinary Orleans client, one process is SIGKILLed mid-stream (no shutdown code, no goodbye
/// to the membership table, connections cut) and a replacement process is started. Nothing else is done
/// by the test: membership, the recovery sweep and participant inquiries must bring every transaction to
/// one outcome in every service, which is then checked in PostgreSQL directly.
/// </summary>
[Collection(SiloProcessCollection.Name)]
public sealed class SiloProcessKillTests(ITestOutputHelper output)
{
    private const int OrderCount = 200;
    private const int Callers = 16;
    private const int SkuCount = 6;
    private const long StockPerSku = 80;
    private const int AccountCount = 10;
    private const long BalancePerAccount = 15_000;
    private const int MaxAttempts = 5;
    private static readonly TimeSpan CallerPace = TimeSpan.FromMilliseconds(150);
    private static readonly TimeSpan RecoveryBound = TimeSpan.FromSeconds(60);

    private enum CallerResult { Committed, Aborted, Rejected, Unavailable, InDoubt, Failed }

    private sealed record Seen(CallerResult Result, int Attempts, string? Detail);

    [Fact]
    public async Task Silo_process_killed_with_SIGKILL_mid_stream_recovers_every_transaction()
    {
        var total = Stopwatch.StartNew();
        var server = await SharedPostgres.ServerAsync();
        var cluster = ProcessClusterSettings.Unique(server.AdminConnectionString, "kill");
        var silos = new List<SiloProcess>();
        ProcessClusterClient? client = null;
        var passed = false;
        try
        {
            // Two silo processes; each provisions the four databases and the schema itself.
            silos.Add(SiloProcess.Start("silo-A", cluster));
            silos.Add(SiloProcess.Start("silo-B", cluster));
            await Task.WhenAll(silos.Select(s => s.WaitActiveAsync(TimeSpan.FromSeconds(60))));
            Assert.Equal(2, await SiloProcess.ActiveSilosAsync(cluster));
            output.WriteLine($"[{total.Elapsed.TotalSeconds,5:0.0} s] 2 silo processes active: {string.Join(", ", silos.Select(s => $"{s.Name} pid {s.Pid} port {s.SiloPort}"))}");

            client = await ProcessClusterClient.ConnectAsync(cluster, responseTimeout: TimeSpan.FromSeconds(10));
            var grains = client.Grains;

            // Catalogue: a few SKUs and accounts; the stream asks for more than there is, so some orders abort.
            var run = Guid.NewGuid().ToString("N")[..8];
            var skus = Enumerable.Range(0, SkuCount).Select(i => (Sku: $"SKU-{run}-{i}", Price: 100L * (i + 1))).ToList();
            var accounts = Enumerable.Range(0, AccountCount).Select(i => $"acct-{run}-{i}").ToList();
            await Task.WhenAll(skus.Select(s => Retrying(() => grains.GetGrain<IInventoryGrain>(s.Sku).SetStock(StockPerSku))));
            await Task.WhenAll(accounts.Select(a => Retrying(() => grains.GetGrain<IPaymentAccountGrain>(a).SetBalance(BalancePerAccount))));

            output.WriteLine($"[{total.Elapsed.TotalSeconds,5:0.0} s] client connected, {SkuCount} SKUs and {AccountCount} accounts seeded");

            var random = new Random(2026);
            var orders = Enumerable.Range(0, OrderCount).Select(i =>
            {
                var lines = skus.OrderBy(_ => random.Next()).Take(random.Next(1, 3))
                    .Select(s => new OrderLine(s.Sku, random.Next(1, 4), s.Price)).ToList();
                return new OrderRequest($"order-{run}-{i}", lines, accounts[random.Next(AccountCount)], $"{i} Process Street, Killville");
            }).ToList();

            // The stream: 16 callers take the next order; an exception is answered by resubmitting the same order.
            var seen = new Seen?[OrderCount];
            var exceptions = new ConcurrentDictionary<string, int>();
            var next = -1;
            var done = 0;
            var stream = Stopwatch.StartNew();
            var callers = Enumerable.Range(0, Callers).Select(_ => Task.Run(async () =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < OrderCount)
                {
                    seen[i] = await PlaceWithResubmission(grains, orders[i], exceptions);
                    Interlocked.Increment(ref done);
                    await Task.Delay(CallerPace);
                }
            })).ToList();

            // SIGKILL one silo process once about a third of the orders are answered, and start a replacement.
            while (Volatile.Read(ref done) < OrderCount / 3)
            {
                if (callers.All(c => c.IsCompleted)) break;
                await Task.Delay(10);
            }
            var victim = silos[0];
            var answeredBeforeKill = Volatile.Read(ref done);
            victim.Kill();
            var sinceKill = Stopwatch.StartNew();
            output.WriteLine($"[{total.Elapsed.TotalSeconds,5:0.0} s] SIGKILL {victim.Name} (pid {victim.Pid}) after {answeredBeforeKill} of {OrderCount} orders answered, {stream.Elapsed.TotalSeconds:0.0} s into the stream");

            // The replacement joins while the stream and recovery go on; nothing waits for it but the final check.
            var replacement = SiloProcess.Start("silo-C", cluster);
            silos.Add(replacement);
            var replacementJoined = Task.Run(async () =>
            {
                await replacement.WaitActiveAsync(TimeSpan.FromSeconds(60));
                return sinceKill.Elapsed;
            });

            await Task.WhenAll(callers).WaitAsync(TimeSpan.FromSeconds(60));
            output.WriteLine($"[{total.Elapsed.TotalSeconds,5:0.0} s] stream finished after {stream.Elapsed.TotalSeconds:0.0} s ({sinceKill.Elapsed.TotalSeconds:0.0} s after the kill)");

            // Recovery is the system's own business: the test only watches PostgreSQL until nothing is open.
            var reader = new StoredStateReader(cluster.Databases);
            var settled = await WaitSettled(reader, RecoveryBound);
            var killToFinished = sinceKill.Elapsed;
            var linesAtSettle = silos.ToDictionary(s => s.Name, s => s.Output.Split(Environment.NewLine).Length);
            output.WriteLine($"[{total.Elapsed.TotalSeconds,5:0.0} s] everything finished {killToFinished.TotalSeconds:0.0} s after the SIGKILL: {settled}");

            var joinedAfter = await replacementJoined;
            output.WriteLine($"[{total.Elapsed.TotalSeconds,5:0.0} s] replacement {replacement.Name} (pid {replacement.Pid}) became active {joinedAfter.TotalSeconds:0.0} s after the kill");
            Assert.False(silos[1].HasExited, $"surviving silo process {silos[1].Name} exited");
            Assert.False(replacement.HasExited, $"replacement silo process {replacement.Name} exited");

            // Caller's view.
            Assert.All(seen, s => Assert.NotNull(s));
            var counts = seen.Select(s => s!.Result).GroupBy(r => r).ToDictionary(g => g.Key, g => g.Count());
            int Count(CallerResult r) => counts.GetValueOrDefault(r);
            output.WriteLine($"at the caller: {Count(CallerResult.Committed)} committed, {Count(CallerResult.Aborted)} aborted, " +
                             $"{Count(CallerResult.Failed)} failed (exception on every attempt), {Count(CallerResult.Unavailable)} unavailable, " +
                             $"{Count(CallerResult.InDoubt)} in doubt, {Count(CallerResult.Rejected)} rejected; " +
                             $"{seen.Count(s => s is { Attempts: > 1 })} orders resubmitted");
            output.WriteLine("exceptions seen by callers: " + (exceptions.IsEmpty ? "none" : string.Join("; ", exceptions.OrderByDescending(e => e.Value).Select(e => $"{e.Value}x {e.Key}"))));
            Assert.Equal(0, Count(CallerResult.Rejected));

            await AssertInvariants(reader, skus.Select(s => s.Sku).ToList(), accounts, orders, seen!);

            // The cluster (survivor + replacement) serves again and shows what the databases hold.
            foreach (var (sku, _) in skus)
            {
                var stored = (await reader.InventoryAsync(false, sku)).Single().State.Resource;
                var snapshot = await Retrying(() => grains.GetGrain<IInventoryGrain>(sku).GetSnapshot());
                Assert.Equal((stored.Committed, 0L, stored.ConsumedTotal), (snapshot.Committed, snapshot.Reserved, snapshot.ConsumedTotal));
            }
            output.WriteLine($"invariants hold; total test time {total.Elapsed.TotalSeconds:0.0} s");

            // Observation, not an assertion: phase-two loops left running by coordinator activations that the
            // runtime invalidated when the dead silo's directory partition went away (nothing stops them).
            foreach (var silo in silos.Where(s => !s.WasKilled))
            {
                var lines = silo.Output.Split(Environment.NewLine);
                bool IsZombie(string l) => l.Contains("delivery failed", StringComparison.Ordinal) && l.Contains("Attempt to access an invalid activation", StringComparison.Ordinal);
                var zombies = lines.Where(IsZombie).ToList();
                var afterSettle = lines.Skip(linesAtSettle[silo.Name]).Count(IsZombie);
                if (zombies.Count > 0)
                    output.WriteLine($"note: {silo.Name} logged {zombies.Count} phase-two retries from invalidated coordinator activations, {afterSettle} of them after everything had finished " +
                                     $"({string.Join(", ", zombies.Select(l => System.Text.RegularExpressions.Regex.Match(l, @"tx-\S+ to \S+").Value).Distinct())})");
            }
            passed = true;
        }
        finally
        {
            if (client is not null) await client.DisposeAsync();
            foreach (var silo in silos) await silo.DisposeAsync();
            // Full silo output on failure (or always with TWOPC_KEEP_PROCESS_LOGS=1), for diagnosis.
            if (!passed || Environment.GetEnvironmentVariable("TWOPC_KEEP_PROCESS_LOGS") == "1")
            {
                var directory = Path.Combine(Path.GetTempPath(), "twopc-process-logs", cluster.ClusterId);
                Directory.CreateDirectory(directory);
                foreach (var silo in silos) await File.WriteAllTextAsync(Path.Combine(directory, silo.Name + ".log"), silo.Output);
                output.WriteLine($"silo process output written to {directory}");
            }
            foreach (var silo in silos)
            {
                var lines = silo.Output.Split(Environment.NewLine);
                var tail = lines.TakeLast(passed ? 15 : 200).ToList();
                output.WriteLine($"--- {silo.Name} (pid {silo.Pid}{(silo.WasKilled ? ", SIGKILLed" : "")}): {lines.Length} output lines, last {tail.Count}:");
                foreach (var line in tail) output.WriteLine(line);
            }
        }
    }

    /// <summary>
    /// Places an order; on an exception (the caller's gateway or the coordinator's silo died) or an answer
    /// that leaves the outcome open, the same order is submitted again: the coordinator is keyed by the
    /// order id and returns the recorded outcome, so nothing is charged twice.
    /// </summary>
    private static async Task<Seen> PlaceWithResubmission(IGrainFactory grains, OrderRequest order, ConcurrentDictionary<string, int> exceptions)
    {
        Seen last = new(CallerResult.Failed, 0, null);
        for (var attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            try
            {
                var outcome = await grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(order.OrderId)).PlaceOrder(order);
                last = outcome.Status switch
                {
                    OrderStatus.Committed => new Seen(CallerResult.Committed, attempt, null),
                    OrderStatus.Aborted => new Seen(CallerResult.Aborted, attempt, outcome.Reason),
                    OrderStatus.Rejected => new Seen(CallerResult.Rejected, attempt, outcome.Reason),
                    OrderStatus.InDoubt => new Seen(CallerResult.InDoubt, attempt, outcome.Reason),
                    _ => new Seen(CallerResult.Unavailable, attempt, outcome.Reason),
                };
                if (last.Result is CallerResult.Committed or CallerResult.Aborted or CallerResult.Rejected) return last;
            }
            catch (Exception ex)
            {
                var error = ex.GetBaseException();
                exceptions.AddOrUpdate(error.GetType().Name, 1, (_, n) => n + 1);
                last = new Seen(CallerResult.Failed, attempt, $"{error.GetType().Name}: {error.Message}");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(500 * attempt));
        }
        return last;
    }

    /// <summary>Polls the service databases until no participant holds a prepared transaction and every coordinator record is completed.</summary>
    private static async Task<string> WaitSettled(StoredStateReader reader, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            var inventory = await reader.InventoryAsync(false);
            var payments = await reader.PaymentsAsync(false);
            var shipments = await reader.ShipmentsAsync(false);
            var coordinators = await reader.CoordinatorsAsync(unfinishedOnly: false);
            var prepared = inventory.Sum(r => r.State.Prepared.Count) + payments.Sum(r => r.State.Prepared.Count) + shipments.Sum(r => r.State.Prepared.Count);
            var open = coordinators.Where(c => !c.State.IsCompleted).ToList();
            var state = $"{prepared} prepared entries, {open.Count} of {coordinators.Count} coordinator records not completed";
            if (prepared == 0 && open.Count == 0) return state;
            if (DateTime.UtcNow > deadline)
            {
                var detail = string.Join("; ", open.Take(5).Select(c => $"{c.Key} {c.State.Decision} unacknowledged {string.Join(",", c.State.Participants.Where(p => !p.Acknowledged).Select(p => p.Participant))}"))
                    + " | prepared at: " + string.Join(", ",
                        inventory.Where(r => r.State.Prepared.Count > 0).Select(r => $"inventory/{r.Key}[{string.Join(",", r.State.Prepared.Keys)}]")
                        .Concat(payments.Where(r => r.State.Prepared.Count > 0).Select(r => $"payment/{r.Key}[{string.Join(",", r.State.Prepared.Keys)}]"))
                        .Concat(shipments.Where(r => r.State.Prepared.Count > 0).Select(r => $"shipment/{r.Key}[{string.Join(",", r.State.Prepared.Keys)}]")).Take(10));
                Assert.Fail($"not finished within {within.TotalSeconds:0} s: {state}: {detail}");
            }
            await Task.Delay(250);
        }
    }

    private async Task AssertInvariants(StoredStateReader reader, IReadOnlyList<string> skus, IReadOnlyList<string> accounts, IReadOnlyList<OrderRequest> orders, IReadOnlyList<Seen> seen)
    {
        var inventory = (await reader.InventoryAsync(false)).ToDictionary(r => r.Key, r => r.State);
        var payments = (await reader.PaymentsAsync(false)).ToDictionary(r => r.Key, r => r.State);
        var shipments = (await reader.ShipmentsAsync(false)).ToDictionary(r => r.Key, r => r.State);
        var coordinators = (await reader.CoordinatorsAsync(unfinishedOnly: false)).ToDictionary(r => r.Key, r => r.State);

        var committed = coordinators.Values.Where(c => c.Decision == Decision.Commit).ToList();
        Assert.All(committed, c => Assert.NotNull(c.Order));

        // Conservation and non-negativity in each service; what was consumed is exactly what committed orders asked for.
        foreach (var sku in skus)
        {
            var record = inventory[sku];
            var counter = record.Resource;
            Assert.Empty(record.Prepared);
            Assert.True(counter.Committed >= 0, $"{sku}: negative stock {counter.Committed}");
            Assert.Equal(StockPerSku, counter.SuppliedTotal);
            Assert.True(counter.Committed + counter.ConsumedTotal == counter.SuppliedTotal,
                $"{sku}: committed {counter.Committed} + consumed {counter.ConsumedTotal} != supplied {counter.SuppliedTotal}");
            var sold = committed.SelectMany(c => c.Order!.Lines).Where(l => l.Sku == sku).Sum(l => l.Quantity);
            Assert.True(sold == counter.ConsumedTotal, $"{sku}: consumed {counter.ConsumedTotal} but committed orders hold {sold}");
        }
        foreach (var account in accounts)
        {
            var record = payments[account];
            var counter = record.Resource;
            Assert.Empty(record.Prepared);
            Assert.True(counter.Committed >= 0, $"{account}: negative balance {counter.Committed}");
            Assert.Equal(BalancePerAccount, counter.SuppliedTotal);
            Assert.True(counter.Committed + counter.ConsumedTotal == counter.SuppliedTotal,
                $"{account}: committed {counter.Committed} + consumed {counter.ConsumedTotal} != supplied {counter.SuppliedTotal}");
            var charged = committed.Where(c => c.Order!.AccountId == account).Sum(c => c.Order!.Amount);
            Assert.True(charged == counter.ConsumedTotal, $"{account}: charged {counter.ConsumedTotal} but committed orders amount to {charged}");
        }

        // Per order: one outcome in every service, and it is the one the caller was told.
        var committedInDb = 0;
        var abortedInDb = 0;
        var noRecord = 0;
        for (var i = 0; i < orders.Count; i++)
        {
            var order = orders[i];
            var tx = TransactionIds.FromOrderId(order.OrderId);
            var coordinator = coordinators.GetValueOrDefault(tx);
            var isCommitted = coordinator?.Decision == Decision.Commit;
            var shipment = shipments.GetValueOrDefault(order.OrderId);
            Assert.Empty(shipment?.Prepared ?? new());
            Assert.True(isCommitted == (shipment?.Resource.Status == ShipmentStatus.Confirmed),
                $"{order.OrderId}: coordinator {coordinator?.Decision.ToString() ?? "no record"}, shipment {shipment?.Resource.Status.ToString() ?? "none"}");
            if (isCommitted)
            {
                committedInDb++;
                Assert.Equal(order.AccountId, coordinator!.Order!.AccountId);
                Assert.Equal(order.Lines.Sum(l => (long)l.Quantity * l.UnitPrice), coordinator.Order.Amount);
                Assert.Equal(order.Lines.Select(l => (l.Sku, (long)l.Quantity)).OrderBy(l => l.Sku), coordinator.Order.Lines.Select(l => (l.Sku, l.Quantity)).OrderBy(l => l.Sku));
            }
            else if (coordinator is null) noRecord++;
            else abortedInDb++;

            switch (seen[i].Result)
            {
                case CallerResult.Committed:
                    Assert.True(isCommitted, $"{order.OrderId}: the caller was told Committed, the coordinator record says {coordinator?.Decision.ToString() ?? "nothing"}");
                    break;
                case CallerResult.Aborted:
                    Assert.False(isCommitted, $"{order.OrderId}: the caller was told Aborted ({seen[i].Detail}) but it committed");
                    break;
            }
        }
        var ours = orders.Select(o => TransactionIds.FromOrderId(o.OrderId)).ToHashSet();
        Assert.All(coordinators.Keys, tx => Assert.Contains(tx, ours));
        output.WriteLine($"in the databases: {committedInDb} committed, {abortedInDb} aborted, {noRecord} without a coordinator record (never started); " +
                         $"units sold {inventory.Values.Sum(r => r.Resource.ConsumedTotal)} of {SkuCount * StockPerSku}, money charged {payments.Values.Sum(r => r.Resource.ConsumedTotal)}");
        Assert.True(committedInDb > 0, "no order committed at all: the workload proves nothing");
    }

    /// <summary>Idempotent calls: retried when the client cannot reach a gateway or silo yet.</summary>
    private static Task Retrying(Func<Task> call) => Retrying(async () => { await call(); return true; });

    private static async Task<T> Retrying<T>(Func<Task<T>> call)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call();
            }
            catch (Exception ex) when (attempt < 20 && ex is Orleans.Runtime.Messaging.ConnectionFailedException or SiloUnavailableException or TimeoutException or OrleansMessageRejectionException)
            {
                await Task.Delay(500);
            }
        }
    }
}
