using OrleansTwoPC.Benchmark.Systems;
using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark.Measurement;

/// <summary>
/// Everything measured in one run: one system, one workload, one concurrency, one round. Throughput,
/// latency and CPU cover the measured load (<see cref="Committed"/> orders, including those answered after
/// the window closed, whose work the CPU figure contains), and so do the grain storage counts; PostgreSQL's
/// counters cover warm-up and measured load together (<see cref="CommittedInDatabaseWindow"/> orders committed
/// in that span).
/// </summary>
public sealed record RunResult(
    int RunNumber,
    string SystemId,
    WorkloadKind Workload,
    int Concurrency,
    int Round,
    TimeSpan Window,
    TimeSpan Elapsed,
    int CommittedInWindow,
    int Committed,
    int Aborted,
    int Failed,
    IReadOnlyList<(string Reason, int Count)> FailureReasons,
    LatencyPercentiles Latency,
    PostgresActivity Activity,
    int CommittedInDatabaseWindow,
    CpuUsage Cpu,
    GrainStorageCounts Storage,
    (double One, double Five, double Fifteen)? LoadAtStart,
    (double One, double Five, double Fifteen)? LoadAtEnd,
    ConservationResult Conservation,
    int WarmUpOrders,
    TimeSpan Overhead,
    int? ActivationsAfter,
    long HeapBytesAfter)
{
    /// <summary>Orders committed within the measured window, per second of it. Orders still in flight when the
    /// window closes finish afterwards (and count everywhere else), but not here: the wind-down with fewer
    /// and fewer callers busy would otherwise pull the rate down, more so the longer the latency.</summary>
    public double CommittedPerSecond => CommittedInWindow / Window.TotalSeconds;
    public double WalSyncsPerCommitted => PerCommitted(Activity.WalSyncs, CommittedInDatabaseWindow);
    public double WalBytesPerCommitted => PerCommitted(Activity.WalBytes, CommittedInDatabaseWindow);
    public double RowsPerCommitted => PerCommitted(Activity.RowsWritten, CommittedInDatabaseWindow);
    public double TransactionsPerCommitted => PerCommitted(Activity.TransactionsCommitted, CommittedInDatabaseWindow);

    /// <summary>CPU of the system's own processes (the benchmark process and PostgreSQL) per committed order;
    /// the whole machine's when PostgreSQL is not on this machine.</summary>
    public double CpuMsPerCommitted => PerCommitted((Cpu.OwnSeconds ?? Cpu.MachineSeconds) * 1000, Committed);
    public double MachineCpuMsPerCommitted => PerCommitted(Cpu.MachineSeconds * 1000, Committed);
    public double StateReadsPerCommitted => PerCommitted(Storage.Reads, Committed);
    public double StateWritesPerCommitted => PerCommitted(Storage.Writes, Committed);

    private static double PerCommitted(double value, int committed) => committed == 0 ? double.NaN : value / committed;

    public static (int Committed, int Aborted, int Failed, IReadOnlyList<(string, int)> FailureReasons) Count(IReadOnlyCollection<PlacedOrder> orders)
    {
        var failures = orders.Where(o => o.Attempt.Kind == OrderAttemptKind.Failed)
            .GroupBy(o => Shorten(o.Attempt.Reason ?? "unknown"))
            .OrderByDescending(g => g.Count())
            .Select(g => (g.Key, g.Count()))
            .ToList();
        return (orders.Count(o => o.Attempt.Kind == OrderAttemptKind.Committed),
            orders.Count(o => o.Attempt.Kind == OrderAttemptKind.Aborted),
            failures.Sum(f => f.Item2),
            failures);
    }

    // Reasons name transaction ids; without digits, failures of one kind group together.
    private static string Shorten(string reason)
    {
        var text = new string(reason.Select(c => char.IsAsciiDigit(c) ? '#' : c).ToArray());
        return text.Length > 160 ? text[..160] + "..." : text;
    }
}
