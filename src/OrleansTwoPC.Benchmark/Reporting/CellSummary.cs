using OrleansTwoPC.Benchmark.Measurement;
using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark.Reporting;

/// <summary>Median and range of one figure over the rounds of a cell.</summary>
public readonly record struct Spread(double Median, double Min, double Max)
{
    public static Spread Of(IEnumerable<double> values)
    {
        var sorted = values.Where(v => !double.IsNaN(v)).Order().ToArray();
        if (sorted.Length == 0) return new Spread(double.NaN, double.NaN, double.NaN);
        var middle = sorted.Length / 2;
        var median = sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
        return new Spread(median, sorted[0], sorted[^1]);
    }
}

/// <summary>The rounds of one (workload, concurrency, system) cell, summarised.</summary>
public sealed record CellSummary(WorkloadKind Workload, int Concurrency, string SystemId, IReadOnlyList<RunResult> Runs)
{
    public Spread CommittedPerSecond => Spread.Of(Runs.Select(r => r.CommittedPerSecond));
    public Spread P50 => Spread.Of(Runs.Select(r => r.Latency.P50Ms));
    public Spread P95 => Spread.Of(Runs.Select(r => r.Latency.P95Ms));
    public Spread P99 => Spread.Of(Runs.Select(r => r.Latency.P99Ms));
    public Spread Aborted => Spread.Of(Runs.Select(r => (double)r.Aborted));
    public int FailedTotal => Runs.Sum(r => r.Failed);
    public Spread WalSyncsPerOrder => Spread.Of(Runs.Select(r => r.WalSyncsPerCommitted));
    public Spread RowsPerOrder => Spread.Of(Runs.Select(r => r.RowsPerCommitted));
    public Spread WalKilobytesPerOrder => Spread.Of(Runs.Select(r => r.WalBytesPerCommitted / 1024));
    public Spread CpuMsPerOrder => Spread.Of(Runs.Select(r => r.CpuMsPerCommitted));
    public Spread MachineCpuMsPerOrder => Spread.Of(Runs.Select(r => r.MachineCpuMsPerCommitted));
    public Spread TransactionsPerOrder => Spread.Of(Runs.Select(r => r.TransactionsPerCommitted));
    public Spread StateReadsPerOrder => Spread.Of(Runs.Select(r => r.StateReadsPerCommitted));
    public Spread StateWritesPerOrder => Spread.Of(Runs.Select(r => r.StateWritesPerCommitted));

    /// <summary>The largest single state write of any round (batched storage only; null otherwise).</summary>
    public long? LargestWriteBytes => Runs.Select(r => r.Storage.LargestWriteBytes).Max();
    public int NoisyRuns => Runs.Count(r => r.Cpu.Noisy);

    public static IReadOnlyList<CellSummary> From(IEnumerable<RunResult> runs) => runs
        .GroupBy(r => (r.Workload, r.Concurrency, r.SystemId))
        .OrderBy(g => g.Key.Workload).ThenBy(g => g.Key.Concurrency).ThenBy(g => g.Key.SystemId, StringComparer.Ordinal)
        .Select(g => new CellSummary(g.Key.Workload, g.Key.Concurrency, g.Key.SystemId, g.OrderBy(r => r.Round).ToList()))
        .ToList();
}
