using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;

namespace OrleansTwoPC.Client.Commands;

/// <summary>What <c>tpc load</c> was asked to do (validated by the command line).</summary>
public sealed record LoadOptions(
    int Orders,
    int Concurrency,
    int Skus,
    int Accounts,
    bool NoSeed,
    double Skew,
    double AbortMix,
    int MaxLines,
    int Seed,
    string RunId,
    bool Json);

/// <summary>Latencies of the order calls in milliseconds (percentiles by nearest rank).</summary>
public sealed record LoadLatency(double P50, double P95, double P99, double Max, double Mean);

/// <summary>The result of a load run, printed as a table or as JSON. <paramref name="Orders"/> counts the
/// orders that got an answer; after an interruption that is fewer than <paramref name="Requested"/>.</summary>
public sealed record LoadSummary(
    string RunId,
    int Seed,
    int Concurrency,
    int Skus,
    int Accounts,
    double Skew,
    double AbortMix,
    int MaxLines,
    int Requested,
    bool Interrupted,
    int Unanswered,
    int Orders,
    double ElapsedSeconds,
    double OrdersPerSecond,
    double CommittedPerSecond,
    LoadLatency LatencyMs,
    int Committed,
    int Aborted,
    IReadOnlyDictionary<string, int> AbortedByReason,
    int Rejected,
    int InDoubt,
    int Unavailable,
    int Failures,
    IReadOnlyDictionary<string, int> FailuresByMessage);

/// <summary>
/// <c>load</c>: N generated orders placed by C concurrent callers against the cluster, with Zipf-like key skew
/// and a share of orders built to abort; a live progress line on a terminal and a summary of throughput,
/// latency percentiles and outcomes. Ctrl+C (SIGINT, or SIGTERM) stops issuing orders, waits for those in
/// flight and prints the summary of what finished (exit 130); a second one stops waiting.
/// </summary>
public static class LoadCommand
{
    public const string SkuPrefix = "load-sku-";
    public const string AccountPrefix = "load-acct-";
    public const string PoorAccount = "load-poor-0001";
    public const long SeededStock = 1_000_000;
    public const long SeededBalance = 1_000_000_000_000;

    /// <summary>Asked by an order built to run out of stock: ten times what is seeded.</summary>
    public const int ExcessiveQuantity = 10_000_000;

    private const string Address = "1 Load Test Way";
    private const int SeedParallelism = 16;

    private enum Kind { Normal, NoStock, NoFunds }

    private readonly record struct Result(OrderStatus? Status, string? Reason, double LatencyMs);

    public static string Sku(int index) => SkuPrefix + (index + 1).ToString("D4", CultureInfo.InvariantCulture);

    public static string Account(int index) => AccountPrefix + (index + 1).ToString("D4", CultureInfo.InvariantCulture);

    /// <summary>A short random run id (a letter and lower-case letters or digits), so reruns never reuse order ids.</summary>
    public static string NewRunId()
    {
        const string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
        var id = new StringBuilder("r");
        for (var i = 0; i < 6; i++)
        {
            id.Append(alphabet[Random.Shared.Next(alphabet.Length)]);
        }

        return id.ToString();
    }

    public static async Task<int> RunAsync(CommandContext c, LoadOptions options)
    {
        // The first Ctrl+C stops issuing orders, a second one stops waiting for those in flight. Handled here:
        // nothing else in tpc turns SIGINT into cancellation (the Orleans client's host only swallows it).
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(c.CancellationToken);
        using var abandon = CancellationTokenSource.CreateLinkedTokenSource(c.CancellationToken);
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            _ = stop.IsCancellationRequested ? abandon.CancelAsync() : stop.CancelAsync();
        }

        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);

        var orders = Generate(options);
        var grains = await c.GrainsAsync();
        if (!options.Json)
        {
            c.Out.WriteLine(
                $"load {options.RunId}: {options.Orders} orders, concurrency {options.Concurrency}, {options.Skus} SKUs, " +
                $"{options.Accounts} accounts, skew {F(options.Skew)}, abort-mix {F(options.AbortMix)}, lines <= {options.MaxLines}, " +
                $"seed {options.Seed.ToString(CultureInfo.InvariantCulture)}");
        }

        if (!options.NoSeed)
        {
            await SeedAsync(c, grains, options, stop.Token);
            if (!options.Json)
            {
                c.Out.WriteLine(
                    $"seeded {options.Skus} SKUs ({Sku(0)}..) with {SeededStock.ToString(CultureInfo.InvariantCulture)} units, " +
                    $"{options.Accounts} accounts ({Account(0)}..) with {SeededBalance.ToString(CultureInfo.InvariantCulture)} and {PoorAccount} with 0");
            }
        }

        if (stop.IsCancellationRequested)
        {
            throw new CliException(ExitCodes.Interrupted, "interrupted before any order was placed");
        }

        var results = new Result?[orders.Count];
        var next = -1;
        var done = 0;
        var committed = 0;
        var aborted = 0;
        var stopwatch = Stopwatch.StartNew();

        async Task Worker()
        {
            while (!stop.IsCancellationRequested)
            {
                var i = Interlocked.Increment(ref next);
                if (i >= orders.Count)
                {
                    return;
                }

                var order = orders[i];
                var started = Stopwatch.GetTimestamp();
                Result result;
                try
                {
                    var outcome = await grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(order.OrderId)).PlaceOrder(order).WaitAsync(abandon.Token);
                    result = new Result(outcome.Status, outcome.Reason, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                }
                catch (OperationCanceledException) when (abandon.IsCancellationRequested)
                {
                    return; // issued, its answer no longer awaited
                }
                catch (Exception ex)
                {
                    var inner = ex.GetBaseException();
                    result = new Result(null, $"{inner.GetType().Name}: {Output.OneLine(inner.Message)}", Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                }

                results[i] = result;
                if (result.Status == OrderStatus.Committed) Interlocked.Increment(ref committed);
                if (result.Status == OrderStatus.Aborted) Interlocked.Increment(ref aborted);
                Interlocked.Increment(ref done);
            }
        }

        using var stopProgress = new CancellationTokenSource();
        var progress = Console.IsErrorRedirected
            ? Task.CompletedTask
            : ProgressAsync(c.Error, options.Orders, stopwatch, () => (Volatile.Read(ref done), Volatile.Read(ref committed), Volatile.Read(ref aborted)), stopProgress.Token);
        try
        {
            await Task.WhenAll(Enumerable.Range(0, Math.Min(options.Concurrency, orders.Count)).Select(_ => Task.Run(Worker)));
        }
        finally
        {
            stopwatch.Stop();
            await stopProgress.CancelAsync();
            await progress;
        }

        var issued = Math.Min(Volatile.Read(ref next) + 1, orders.Count);
        var finished = results.Take(issued).OfType<Result>().ToList();
        var interrupted = stop.IsCancellationRequested && issued < orders.Count || finished.Count < issued;
        var summary = Summarize(options, finished, issued - finished.Count, interrupted, stopwatch.Elapsed);
        if (interrupted)
        {
            c.Error.WriteLine(
                $"tpc load: interrupted: {issued} of {options.Orders} orders placed, {finished.Count} answered" +
                (finished.Count < issued ? $", {issued - finished.Count} not waited for (their outcome is unknown; see 'tpc in-doubt')" : "") +
                "; the summary counts the answered ones");
        }

        if (options.Json)
        {
            Output.WriteJson(c.Out, summary);
        }
        else
        {
            WriteText(c.Out, summary);
        }

        return interrupted ? ExitCodes.Interrupted
            : summary.Failures == 0 && summary.InDoubt == 0 ? ExitCodes.Ok : ExitCodes.Failure;
    }

    /// <summary>All orders of the run, generated up front from the seed (the same seed gives the same orders).</summary>
    public static IReadOnlyList<OrderRequest> Generate(LoadOptions options)
    {
        var random = new Random(options.Seed);
        var skuWeights = Cumulative(options.Skus, options.Skew);
        var accountWeights = Cumulative(options.Accounts, options.Skew);

        // Exactly round(N * P) orders are built to abort, at random positions, alternating the two kinds.
        var abortCount = (int)Math.Round(options.Orders * options.AbortMix, MidpointRounding.AwayFromZero);
        var positions = Enumerable.Range(0, options.Orders).ToArray();
        random.Shuffle(positions);
        var kinds = new Kind[options.Orders];
        for (var k = 0; k < abortCount; k++)
        {
            kinds[positions[k]] = k % 2 == 0 ? Kind.NoStock : Kind.NoFunds;
        }

        var orders = new List<OrderRequest>(options.Orders);
        for (var i = 0; i < options.Orders; i++)
        {
            var lineCount = Math.Min(1 + random.Next(options.MaxLines), options.Skus);
            var skus = new List<int>(lineCount);
            for (var attempt = 0; skus.Count < lineCount && attempt < lineCount * 20; attempt++)
            {
                var sku = Pick(skuWeights, random);
                if (!skus.Contains(sku)) skus.Add(sku);
            }

            var lines = skus.Select(s => new OrderLine(Sku(s), 1 + random.Next(3), Price(s))).ToList();
            var account = Account(Pick(accountWeights, random));
            switch (kinds[i])
            {
                case Kind.NoStock:
                    lines[0] = lines[0] with { Quantity = ExcessiveQuantity };
                    break;
                case Kind.NoFunds:
                    account = PoorAccount;
                    break;
            }

            orders.Add(new OrderRequest($"{options.RunId}-{(i + 1).ToString("D6", CultureInfo.InvariantCulture)}", lines, account, Address));
        }

        return orders;
    }

    /// <summary>Nearest-rank percentile of sorted values: the smallest value with at least p% of values at or below it.</summary>
    public static double Percentile(IReadOnlyList<double> sorted, double percent)
    {
        if (sorted.Count == 0) return 0;
        var rank = (int)Math.Ceiling(percent / 100.0 * sorted.Count);
        return sorted[Math.Clamp(rank, 1, sorted.Count) - 1];
    }

    /// <summary>A short group for an abort reason: the known shortages and timeouts, else its first 60 characters.</summary>
    public static string ShortReason(string? reason)
    {
        var text = Output.OneLine(reason);
        foreach (var known in new[] { "insufficient stock", "insufficient funds" })
        {
            if (text.Contains(known, StringComparison.OrdinalIgnoreCase)) return known;
        }

        if (text.Contains("prepare timed out", StringComparison.OrdinalIgnoreCase)
            || text.Contains("prepare timeout", StringComparison.OrdinalIgnoreCase)
            || text.Contains("no vote within", StringComparison.OrdinalIgnoreCase))
        {
            return "prepare timeout";
        }

        return text.Length <= 60 ? text : text[..60];
    }

    private static long Price(int skuIndex) => 100 + (skuIndex * 37 % 900);

    /// <summary>Cumulative weights 1/(rank^skew): skew 0 is uniform, larger skews favour the first keys.</summary>
    private static double[] Cumulative(int count, double skew)
    {
        var cumulative = new double[count];
        var total = 0.0;
        for (var i = 0; i < count; i++)
        {
            total += skew == 0 ? 1.0 : 1.0 / Math.Pow(i + 1, skew);
            cumulative[i] = total;
        }

        return cumulative;
    }

    private static int Pick(double[] cumulative, Random random)
    {
        var target = random.NextDouble() * cumulative[^1];
        var index = Array.BinarySearch(cumulative, target);
        index = index >= 0 ? index : ~index;
        return Math.Min(index, cumulative.Length - 1);
    }

    private static async Task SeedAsync(CommandContext c, IGrainFactory grains, LoadOptions options, CancellationToken stop)
    {
        var work = Enumerable.Range(0, options.Skus).Select(i => (What: $"stock of {Sku(i)}", Call: (Func<Task>)(() => grains.GetGrain<IInventoryGrain>(Sku(i)).SetStock(SeededStock))))
            .Concat(Enumerable.Range(0, options.Accounts).Select(i => (What: $"balance of {Account(i)}", Call: (Func<Task>)(() => grains.GetGrain<IPaymentAccountGrain>(Account(i)).SetBalance(SeededBalance)))))
            .Append((What: $"balance of {PoorAccount}", Call: (Func<Task>)(() => grains.GetGrain<IPaymentAccountGrain>(PoorAccount).SetBalance(0))))
            .ToList();
        try
        {
            await Parallel.ForEachAsync(work, new ParallelOptions { MaxDegreeOfParallelism = SeedParallelism, CancellationToken = stop },
                async (item, _) =>
                {
                    try
                    {
                        await c.Call(item.Call());
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException)
                    {
                        throw CliException.Failed($"seeding failed: {item.What} not set: {Output.OneLine(ServiceAvailability.Describe(ex.GetBaseException().Message))} (use --no-seed to skip seeding)", ex);
                    }
                });
        }
        catch (AggregateException ex) when (ex.InnerException is CliException cli)
        {
            throw cli;
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            throw new CliException(ExitCodes.Interrupted, "interrupted while seeding; no order was placed");
        }
    }

    private static async Task ProgressAsync(TextWriter error, int total, Stopwatch stopwatch, Func<(int Done, int Committed, int Aborted)> read, CancellationToken stop)
    {
        const int barWidth = 30;
        var lastLength = 0;

        void Draw()
        {
            var (done, committed, aborted) = read();
            var seconds = Math.Max(stopwatch.Elapsed.TotalSeconds, 0.001);
            var filled = total == 0 ? barWidth : (int)((long)done * barWidth / total);
            var line =
                $"[{new string('#', filled)}{new string('.', barWidth - filled)}] {done}/{total}  " +
                $"{(done / seconds).ToString("0", CultureInfo.InvariantCulture)} orders/s  commits {committed}  aborts {aborted}";
            error.Write("\r" + line.PadRight(lastLength));
            lastLength = line.Length;
            error.Flush();
        }

        try
        {
            using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(250));
            Draw();
            while (await timer.WaitForNextTickAsync(stop))
            {
                Draw();
            }
        }
        catch (OperationCanceledException)
        {
            // The run is over.
        }

        Draw();
        error.WriteLine();
        error.Flush();
    }

    private static LoadSummary Summarize(LoadOptions options, IReadOnlyList<Result> results, int unanswered, bool interrupted, TimeSpan elapsed)
    {
        var latencies = results.Select(r => r.LatencyMs).Order().ToList();
        var seconds = Math.Max(elapsed.TotalSeconds, 1e-6);
        int Count(OrderStatus status) => results.Count(r => r.Status == status);
        var committed = Count(OrderStatus.Committed);
        return new LoadSummary(
            options.RunId,
            options.Seed,
            options.Concurrency,
            options.Skus,
            options.Accounts,
            options.Skew,
            options.AbortMix,
            options.MaxLines,
            options.Orders,
            interrupted,
            unanswered,
            results.Count,
            Math.Round(elapsed.TotalSeconds, 3),
            Math.Round(results.Count / seconds, 1),
            Math.Round(committed / seconds, 1),
            new LoadLatency(
                Math.Round(Percentile(latencies, 50), 2),
                Math.Round(Percentile(latencies, 95), 2),
                Math.Round(Percentile(latencies, 99), 2),
                Math.Round(latencies.Count == 0 ? 0 : latencies[^1], 2),
                Math.Round(latencies.Count == 0 ? 0 : latencies.Average(), 2)),
            committed,
            Count(OrderStatus.Aborted),
            Group(results.Where(r => r.Status == OrderStatus.Aborted).Select(r => ShortReason(r.Reason))),
            Count(OrderStatus.Rejected),
            Count(OrderStatus.InDoubt),
            Count(OrderStatus.Unavailable),
            results.Count(r => r.Status is null),
            Group(results.Where(r => r.Status is null).Select(r => ShortReason(r.Reason))));
    }

    private static IReadOnlyDictionary<string, int> Group(IEnumerable<string> keys) =>
        keys.GroupBy(k => k, StringComparer.Ordinal)
            .OrderByDescending(g => g.Count()).ThenBy(g => g.Key, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Count(), StringComparer.Ordinal);

    private static void WriteText(TextWriter output, LoadSummary s)
    {
        var rows = new List<IReadOnlyList<string>>();
        if (s.Interrupted)
        {
            rows.Add(["interrupted", $"{N(s.Orders)} of {N(s.Requested)} orders answered" + (s.Unanswered > 0 ? $", {N(s.Unanswered)} not waited for" : "")]);
        }

        rows.AddRange(new List<IReadOnlyList<string>>
        {
            new[] { "orders", s.Orders.ToString(CultureInfo.InvariantCulture) },
            new[] { "elapsed", F(s.ElapsedSeconds) + " s" },
            new[] { "orders/s", F(s.OrdersPerSecond) },
            new[] { "committed/s", F(s.CommittedPerSecond) },
            new[] { "latency p50", F(s.LatencyMs.P50) + " ms" },
            new[] { "latency p95", F(s.LatencyMs.P95) + " ms" },
            new[] { "latency p99", F(s.LatencyMs.P99) + " ms" },
            new[] { "latency max", F(s.LatencyMs.Max) + " ms" },
            new[] { "committed", N(s.Committed) },
            new[] { "aborted", N(s.Aborted) },
        });
        rows.AddRange(s.AbortedByReason.Select(r => (IReadOnlyList<string>)["  " + r.Key, N(r.Value)]));
        rows.Add(["rejected", N(s.Rejected)]);
        rows.Add(["in doubt", N(s.InDoubt)]);
        rows.Add(["unavailable", N(s.Unavailable)]);
        rows.Add(["failures", N(s.Failures)]);
        rows.AddRange(s.FailuresByMessage.Select(r => (IReadOnlyList<string>)["  " + r.Key, N(r.Value)]));
        Output.WriteTable(output, ["METRIC", "VALUE"], rows);
    }

    private static string N(int value) => value.ToString(CultureInfo.InvariantCulture);

    private static string F(double value) => value.ToString("0.###", CultureInfo.InvariantCulture);
}
