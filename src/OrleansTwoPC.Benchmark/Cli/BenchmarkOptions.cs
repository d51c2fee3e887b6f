using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark.Cli;

public enum BenchmarkMode
{
    /// <summary>Every workload, concurrency and round: the published report (Release build, ~25 minutes).</summary>
    Full,

    /// <summary>A small, fast pass over all three systems: proves the harness works, nothing about speed.</summary>
    Short,

    /// <summary>Only the idle-activation memory measurement of system A.</summary>
    Memory,
}

/// <summary>Everything the command line chose. Defaults depend on the mode (see <see cref="ForMode"/>).</summary>
public sealed record BenchmarkOptions
{
    public BenchmarkMode Mode { get; init; } = BenchmarkMode.Full;
    public IReadOnlyList<WorkloadKind> Workloads { get; init; } = [WorkloadKind.Uniform, WorkloadKind.Hot, WorkloadKind.AbortHeavy];
    public IReadOnlyList<int> Concurrency { get; init; } = [1, 8, 32, 128];

    /// <summary>Measured time per run.</summary>
    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(8);

    /// <summary>Unmeasured load on the same system right before each measured run.</summary>
    public TimeSpan WarmUp { get; init; } = TimeSpan.FromSeconds(2);

    public int Rounds { get; init; } = 3;
    public IReadOnlyList<string> Systems { get; init; } = ["A", OrleansTwoPC.Benchmark.Systems.A.TwoPhaseCommitSystem.AdoNetId, "B", "C"];

    /// <summary>Markdown report file; null writes only to stdout.</summary>
    public string? OutputPath { get; init; }

    public int SkuCount { get; init; } = 10_000;
    public int AccountCount { get; init; } = 10_000;

    /// <summary>Idle participant activations of the memory measurement; 0 skips it.</summary>
    public int MemoryActivations { get; init; } = 100_000;

    public int Seed { get; init; } = 2026;

    /// <summary>Memory mode only: print the result as one machine-readable line (used by the parent run).</summary>
    public bool EmitMemoryJson { get; init; }

    /// <summary>The arguments as given, for the report's "exact command" (connection strings redacted).</summary>
    public IReadOnlyList<string> RawArguments { get; init; } = [];

    /// <summary>Configuration keys given as <c>--Key:Sub=Value</c> (connection string, product settings).</summary>
    public IReadOnlyDictionary<string, string?> Configuration { get; init; } = new Dictionary<string, string?>();

    public static BenchmarkOptions ForMode(BenchmarkMode mode) => mode switch
    {
        BenchmarkMode.Short => new BenchmarkOptions
        {
            Mode = mode,
            Workloads = [WorkloadKind.Uniform, WorkloadKind.Hot, WorkloadKind.AbortHeavy],
            Concurrency = [4],
            Duration = TimeSpan.FromSeconds(2),
            WarmUp = TimeSpan.FromSeconds(0.5),
            Rounds = 1,
            // Smaller catalogue: seeding B's 20,000 grains one transaction each would take most of the budget.
            SkuCount = 200,
            AccountCount = 200,
            MemoryActivations = 2_000,
        },
        BenchmarkMode.Memory => new BenchmarkOptions { Mode = mode },
        _ => new BenchmarkOptions { Mode = mode, OutputPath = DefaultReportPath() },
    };

    /// <summary>docs/benchmarks.md of the repository the command runs in (found from the working directory).</summary>
    public static string? DefaultReportPath()
    {
        for (var directory = new DirectoryInfo(Environment.CurrentDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "OrleansTwoPC.sln")))
                return Path.Combine(directory.FullName, "docs", "benchmarks.md");
        }
        return Path.Combine(Environment.CurrentDirectory, "benchmarks.md");
    }
}
