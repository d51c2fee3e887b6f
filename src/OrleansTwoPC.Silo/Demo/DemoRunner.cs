using System.Diagnostics;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Silo.Demo;

public sealed class DemoOptions
{
    public int Concurrency { get; set; } = 32;

    /// <summary>Orders of the throughput part (ample stock and money: all should commit).</summary>
    public int ThroughputOrders { get; set; } = 2000;

    /// <summary>Orders of the contention part (3 hot SKUs, stock and some balances cover only part).</summary>
    public int ContentionOrders { get; set; } = 300;

    public int Seed { get; set; } = 2026;
    public bool PrintEveryOrder { get; set; } = true;
}

/// <summary>
/// The main job: seeds a catalogue, measures throughput on orders that all commit, then runs concurrent
/// orders over three hot SKUs where some must abort, prints every outcome and reconciles stock and money.
/// </summary>
public sealed class DemoRunner(IGrainFactory grains, ServiceDatabases databases, TextWriter output)
{
    public async Task<int> RunAsync(DemoOptions options, CancellationToken cancellationToken)
    {
        var random = new Random(options.Seed);
        output.WriteLine($"== Part 1: throughput, {options.ThroughputOrders} orders from {options.Concurrency} concurrent callers, 1 SKU line each over 500 SKUs / 500 accounts");
        var wide = new Catalogue(
            Enumerable.Range(1, 500).ToDictionary(i => $"WIDE-{i:000}", _ => 1_000_000L),
            Enumerable.Range(1, 500).ToDictionary(i => $"acct-wide-{i:000}", _ => 1_000_000_000L));
        await wide.SeedAsync(grains);
        var wideOrders = Enumerable.Range(1, options.ThroughputOrders).Select(i => new OrderRequest(
            $"demo-w{options.Seed}-{i:00000}",
            new[] { new OrderLine($"WIDE-{random.Next(1, 501):000}", random.Next(1, 4), random.Next(100, 5000)) },
            $"acct-wide-{random.Next(1, 501):000}",
            $"{i} Long Street, Springfield")).ToList();
        // Warm-up: activate the participants so the measurement is of the protocol, not of first loads.
        await OrderRunner.RunAsync(grains, wideOrders.Take(100).ToList(), options.Concurrency, cancellationToken);
        await Task.Delay(500, cancellationToken);
        var measured = wideOrders.Skip(100).ToList();
        var writesBefore = await StorageWriteCounter.ReadAsync(databases);
        var clock = Stopwatch.StartNew();
        var wideResults = await OrderRunner.RunAsync(grains, measured, options.Concurrency, cancellationToken);
        var throughput = RunStatistics.From(wideResults, clock.Elapsed);
        var wideCheck = await Reconciliation.CheckAsync(grains, wide, wideOrders.Take(100).Select(o => new OrderResult(o, null, null, TimeSpan.Zero))
            .Concat(wideResults).ToList(), TimeSpan.FromSeconds(30));
        var writes = StorageWriteCounter.Delta(writesBefore, await StorageWriteCounter.ReadAsync(databases));
        output.WriteLine($"   {throughput}");
        var committed = Math.Max(1, throughput.Committed);
        output.WriteLine($"   durable grain-state writes per committed order: {writes.Values.Sum() / (double)committed:0.00} " +
                         $"({string.Join(", ", writes.Select(w => $"{w.Key} {w.Value / (double)committed:0.00}"))})");
        if (!wideCheck.Ok)
        {
            foreach (var v in wideCheck.Violations) output.WriteLine($"   VIOLATION {v}");
        }

        output.WriteLine();
        output.WriteLine($"== Part 2: {options.ContentionOrders} orders from {options.Concurrency} concurrent callers over 3 hot SKUs (stock covers only part; some accounts are poor)");
        var hot = new Catalogue(
            new Dictionary<string, long> { ["HOT-RED"] = 120, ["HOT-GREEN"] = 90, ["HOT-BLUE"] = 60 },
            Enumerable.Range(1, 40).ToDictionary(i => $"acct-{i:00}", i => i % 5 == 0 ? 3_000L : 200_000L));
        await hot.SeedAsync(grains);
        var prices = new Dictionary<string, long> { ["HOT-RED"] = 1500, ["HOT-GREEN"] = 2500, ["HOT-BLUE"] = 990 };
        var hotOrders = Enumerable.Range(1, options.ContentionOrders).Select(i =>
        {
            var skus = prices.Keys.OrderBy(_ => random.Next()).Take(random.Next(1, 3));
            return new OrderRequest($"demo-h{options.Seed}-{i:0000}",
                skus.Select(s => new OrderLine(s, random.Next(1, 4), prices[s])).ToList(),
                $"acct-{random.Next(1, 41):00}", $"{i} Market Square, Shelbyville");
        }).ToList();
        clock.Restart();
        var hotResults = await OrderRunner.RunAsync(grains, hotOrders, options.Concurrency, cancellationToken);
        var contention = RunStatistics.From(hotResults, clock.Elapsed);
        if (options.PrintEveryOrder)
        {
            foreach (var r in hotResults)
            {
                var what = r.Outcome is null ? $"FAILED   {r.Error}"
                    : r.Outcome.Status == OrderStatus.Committed ? $"COMMITTED amount {r.Outcome.TotalAmount}"
                    : $"{r.Outcome.Status.ToString().ToUpperInvariant(),-9} {r.Outcome.Reason}";
                output.WriteLine($"   {r.Order.OrderId} {r.Latency.TotalMilliseconds,7:0.0} ms  {what}");
            }
        }
        output.WriteLine($"   {contention}");
        foreach (var reason in hotResults.Where(r => r.Outcome?.Status == OrderStatus.Aborted)
                     .GroupBy(r => AbortKind(r.Outcome!.Reason)).OrderByDescending(g => g.Count()))
            output.WriteLine($"   aborted: {reason.Count(),4} x {reason.Key}");

        var check = await Reconciliation.CheckAsync(grains, hot, hotResults, TimeSpan.FromSeconds(30));
        output.WriteLine();
        output.WriteLine("== Reconciliation (committed state read back from the three services)");
        foreach (var line in check.Lines) output.WriteLine(line);
        var violations = wideCheck.Violations.Concat(check.Violations).ToList();
        foreach (var v in check.Violations) output.WriteLine($"   VIOLATION {v}");
        output.WriteLine(violations.Count == 0
            ? "RESULT: OK - every order all-or-nothing, stock and money conserved, no oversell, nothing left reserved"
            : $"RESULT: FAILED - {violations.Count} violations");
        return violations.Count == 0 ? 0 : 1;
    }

    private static string AbortKind(string? reason) =>
        reason is null ? "unknown"
        : reason.Contains("insufficient stock") ? "insufficient stock"
        : reason.Contains("insufficient funds") ? "insufficient funds"
        : reason.Contains("timed out") ? "prepare timeout"
        : reason;
}
