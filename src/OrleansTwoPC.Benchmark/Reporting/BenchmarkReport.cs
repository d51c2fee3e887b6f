using OrleansTwoPC.Benchmark.Cli;
using OrleansTwoPC.Benchmark.Measurement;
using OrleansTwoPC.Benchmark.Memory;
using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark.Reporting;

/// <summary>Everything the report is made from.</summary>
public sealed record BenchmarkReport(
    BenchmarkOptions Options,
    string Command,
    DateTimeOffset StartedAt,
    DateTimeOffset FinishedAt,
    MachineDescription Machine,
    IReadOnlyList<(string Id, string Description)> Systems,
    Catalogue? Catalogue,
    IReadOnlyList<RunResult> Runs,
    MemoryResult? Memory,
    string? MemoryError)
{
    /// <summary>The concurrency the headline ratios are taken at: 32 as asked, else the largest one run.</summary>
    public int RatioConcurrency => Runs.Any(r => r.Concurrency == 32) ? 32 : Runs.Select(r => r.Concurrency).DefaultIfEmpty(0).Max();
}
