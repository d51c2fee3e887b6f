using System.Diagnostics;

namespace OrleansTwoPC.Silo.Demo;

public sealed record OrderResult(OrderRequest Order, OrderOutcome? Outcome, string? Error, TimeSpan Latency);

/// <summary>Places orders from a fixed number of concurrent callers and measures each one's latency.</summary>
public static class OrderRunner
{
    public static async Task<IReadOnlyList<OrderResult>> RunAsync(IGrainFactory grains, IReadOnlyList<OrderRequest> orders, int concurrency, CancellationToken cancellationToken = default)
    {
        if (concurrency < 1) throw new ArgumentOutOfRangeException(nameof(concurrency), concurrency, "concurrency must be at least 1");
        var results = new OrderResult[orders.Count];
        var next = -1;
        var callers = Enumerable.Range(0, Math.Min(concurrency, orders.Count)).Select(async _ =>
        {
            int i;
            while ((i = Interlocked.Increment(ref next)) < orders.Count)
            {
                cancellationToken.ThrowIfCancellationRequested();
                results[i] = await PlaceAsync(grains, orders[i]);
            }
        });
        await Task.WhenAll(callers);
        return results;
    }

    public static async Task<OrderResult> PlaceAsync(IGrainFactory grains, OrderRequest order)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            var outcome = await grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(order.OrderId)).PlaceOrder(order);
            return new OrderResult(order, outcome, null, Stopwatch.GetElapsedTime(started));
        }
        catch (Exception ex)
        {
            return new OrderResult(order, null, $"{ex.GetType().Name}: {ex.Message}", Stopwatch.GetElapsedTime(started));
        }
    }
}

/// <summary>Throughput and latency percentiles of a run.</summary>
public sealed record RunStatistics(int Orders, int Committed, int Aborted, int Rejected, int InDoubtOrFailed, TimeSpan Elapsed,
    double OrdersPerSecond, double CommittedPerSecond, TimeSpan P50, TimeSpan P95, TimeSpan P99)
{
    public static RunStatistics From(IReadOnlyList<OrderResult> results, TimeSpan elapsed)
    {
        var latencies = results.Select(r => r.Latency).OrderBy(l => l).ToArray();
        int Count(OrderStatus s) => results.Count(r => r.Outcome?.Status == s);
        var committed = Count(OrderStatus.Committed);
        return new RunStatistics(results.Count, committed, Count(OrderStatus.Aborted), Count(OrderStatus.Rejected),
            results.Count(r => r.Outcome is null || r.Outcome.Status == OrderStatus.InDoubt), elapsed,
            results.Count / elapsed.TotalSeconds, committed / elapsed.TotalSeconds,
            Percentile(latencies, 0.50), Percentile(latencies, 0.95), Percentile(latencies, 0.99));
    }

    /// <summary>Nearest-rank percentile.</summary>
    public static TimeSpan Percentile(IReadOnlyList<TimeSpan> sorted, double p)
    {
        if (sorted.Count == 0) return TimeSpan.Zero;
        var rank = (int)Math.Ceiling(p * sorted.Count);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Count - 1)];
    }

    public override string ToString() =>
        $"{Orders} orders in {Elapsed.TotalSeconds:0.00} s: {OrdersPerSecond:0.0} orders/s ({CommittedPerSecond:0.0} committed/s), " +
        $"committed {Committed}, aborted {Aborted}, rejected {Rejected}, in doubt/failed {InDoubtOrFailed}; " +
        $"latency p50 {P50.TotalMilliseconds:0.0} ms, p95 {P95.TotalMilliseconds:0.0} ms, p99 {P99.TotalMilliseconds:0.0} ms";
}
