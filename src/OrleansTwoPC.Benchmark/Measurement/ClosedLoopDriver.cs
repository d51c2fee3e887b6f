using System.Diagnostics;
using OrleansTwoPC.Benchmark.Systems;
using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark.Measurement;

/// <summary>One placed order, what the caller saw, and when the answer came (from the start of the run).</summary>
public sealed record PlacedOrder(BenchOrder Order, OrderAttempt Attempt, TimeSpan Latency, TimeSpan AnsweredAt);

public sealed record DriverResult(IReadOnlyList<PlacedOrder> Orders, TimeSpan Elapsed);

/// <summary>
/// Closed loop: a fixed number of callers, each placing its next order as soon as the previous one is
/// answered, until the time is up. Orders in flight at the deadline are waited for; the elapsed time runs
/// until the last of them returns.
/// </summary>
public static class ClosedLoopDriver
{
    public static async Task<DriverResult> RunAsync(IOrderSystem system, OrderStream stream, int callers, TimeSpan duration, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var work = Enumerable.Range(0, callers).Select(_ => Task.Run(async () =>
        {
            var placed = new List<PlacedOrder>();
            while (clock.Elapsed < duration && !cancellationToken.IsCancellationRequested)
            {
                var order = stream.Next();
                var started = Stopwatch.GetTimestamp();
                OrderAttempt attempt;
                try
                {
                    attempt = await system.PlaceAsync(order);
                }
                catch (Exception ex)
                {
                    attempt = OrderAttempt.Failed(ex);
                }
                placed.Add(new PlacedOrder(order, attempt, Stopwatch.GetElapsedTime(started), clock.Elapsed));
            }
            return placed;
        }, CancellationToken.None)).ToList();
        var results = await Task.WhenAll(work);
        var elapsed = clock.Elapsed;
        cancellationToken.ThrowIfCancellationRequested();
        return new DriverResult(results.SelectMany(r => r).ToList(), elapsed);
    }
}
