using System.Diagnostics;

namespace OrleansTwoPC.Benchmark.Measurement;

/// <summary>
/// CPU used during one run: the whole machine, the benchmark process (the systems' silos and the load
/// generator) and the PostgreSQL server (null when it is not on this machine). What the machine used beyond
/// those two was used by something else: a run where that exceeds <see cref="NoisyCores"/> is flagged noisy.
/// </summary>
public readonly record struct CpuUsage(double MachineSeconds, double ProcessSeconds, double? PostgresSeconds, double WindowSeconds)
{
    /// <summary>Average cores used by other processes above which a run is noisy.</summary>
    public const double NoisyCores = 0.10;

    /// <summary>The benchmark process plus PostgreSQL: what the system under test made this machine do.</summary>
    public double? OwnSeconds => PostgresSeconds is { } postgres ? ProcessSeconds + postgres : null;

    /// <summary>Machine CPU not used by the benchmark process or PostgreSQL (kernel work not charged to a process included).</summary>
    public double? OtherSeconds => OwnSeconds is { } own ? Math.Max(0, MachineSeconds - own) : null;

    public double? OtherCores => OtherSeconds is { } other && WindowSeconds > 0 ? other / WindowSeconds : null;

    public bool Noisy => OtherCores > NoisyCores;
}

/// <summary>A reading of the counters behind <see cref="CpuUsage"/>.</summary>
public readonly record struct CpuSample(double Machine, double Process, double? Postgres, long Timestamp)
{
    public static CpuSample Take(int? postmasterPid) => new(
        MachineCpu.BusySeconds(),
        ProcessCpu.Seconds(Environment.ProcessId) ?? 0,
        postmasterPid is { } pid ? ProcessCpu.PostgresSeconds(pid) : null,
        Stopwatch.GetTimestamp());

    public static CpuUsage operator -(CpuSample after, CpuSample before) => new(
        after.Machine - before.Machine,
        after.Process - before.Process,
        after.Postgres is { } a && before.Postgres is { } b ? a - b : null,
        Stopwatch.GetElapsedTime(before.Timestamp, after.Timestamp).TotalSeconds);
}
