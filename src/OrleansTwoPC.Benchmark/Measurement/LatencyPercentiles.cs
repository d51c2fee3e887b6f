namespace OrleansTwoPC.Benchmark.Measurement;

public readonly record struct LatencyPercentiles(double P50Ms, double P95Ms, double P99Ms)
{
    /// <summary>Nearest-rank percentiles of the given latencies.</summary>
    public static LatencyPercentiles From(IEnumerable<TimeSpan> latencies)
    {
        var sorted = latencies.Select(l => l.TotalMilliseconds).Order().ToArray();
        return new LatencyPercentiles(Rank(sorted, 0.50), Rank(sorted, 0.95), Rank(sorted, 0.99));
    }

    private static double Rank(double[] sorted, double p)
    {
        if (sorted.Length == 0) return double.NaN;
        var rank = (int)Math.Ceiling(p * sorted.Length);
        return sorted[Math.Clamp(rank - 1, 0, sorted.Length - 1)];
    }
}
