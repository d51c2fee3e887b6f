using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Npgsql;
using OrleansTwoPC.Benchmark.Cli;
using OrleansTwoPC.Benchmark.Infrastructure;
using OrleansTwoPC.Benchmark.Measurement;
using OrleansTwoPC.Benchmark.Memory;
using OrleansTwoPC.Benchmark.Reporting;
using OrleansTwoPC.Benchmark.Systems;
using OrleansTwoPC.Benchmark.Systems.A;
using OrleansTwoPC.Benchmark.Systems.B;
using OrleansTwoPC.Benchmark.Systems.C;
using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark;

/// <summary>A conservation check failed: the numbers of that system must not be published.</summary>
public sealed class ConservationViolationException(string message) : Exception(message);

/// <summary>
/// Runs the comparison: starts PostgreSQL and the three systems, seeds them, runs every cell with the systems
/// alternating round by round, checks conservation after every run, measures memory and writes the report.
/// </summary>
public sealed class BenchmarkSession(BenchmarkOptions options, IConfiguration configuration, ILoggerFactory loggers, TextWriter output)
{
    /// <summary>Time for exited backends' statistics to be published (done as they exit; this is margin).</summary>
    private static readonly TimeSpan StatisticsDelay = TimeSpan.FromSeconds(1);

    /// <summary>Idle time after the last answer still charged to the run (phase two, confirmations).</summary>
    private static readonly TimeSpan Drain = TimeSpan.FromSeconds(0.5);

    private static readonly TimeSpan SettleTimeout = TimeSpan.FromSeconds(30);

    public async Task<BenchmarkReport> RunAsync(CancellationToken cancellationToken)
    {
        var started = DateTimeOffset.UtcNow;
        var prefix = "bench" + started.ToString("yyMMddHHmmss", CultureInfo.InvariantCulture);
        await using var postgres = await BenchmarkPostgres.StartAsync(
            configuration[BenchmarkPostgres.ServerConnectionStringKey], prefix, loggers.CreateLogger("OrleansTwoPC.Benchmark.Postgres"), cancellationToken);
        output.WriteLine($"PostgreSQL: {(postgres.Embedded is null ? "existing server" : $"embedded on port {postgres.Embedded.Port}")}, databases {prefix}_*");
        var machine = await MachineDescription.ReadAsync(postgres, cancellationToken);

        var postmasterPid = await postgres.LocalPostmasterPidAsync(cancellationToken);
        output.WriteLine(postmasterPid is { } pid
            ? $"CPU counted per process: this process (silos and load generator) and PostgreSQL (postmaster pid {pid} and its children)"
            : "PostgreSQL is not on this machine: CPU per order falls back to the whole machine");
        using var storageCounter = new GrainStorageCounter();
        var catalogue = new Catalogue(options.SkuCount, options.AccountCount);
        var runs = new List<RunResult>();
        var systems = new List<IOrderSystem>();
        try
        {
            foreach (var id in options.Systems) systems.Add(await CreateSystemAsync(id, postgres, cancellationToken));
            // Start-up and seeding are not measured: the systems get ready side by side.
            await Task.WhenAll(systems.Select(async system =>
            {
                var clock = Stopwatch.StartNew();
                await system.StartAsync(cancellationToken);
                await system.SeedAsync(catalogue, cancellationToken);
                // Seeding's own phase two / confirmations must not land in the first run's counters.
                if (!await system.WaitUntilSettledAsync(SettleTimeout, cancellationToken))
                    throw new InvalidOperationException($"system {system.Id}: seeding transactions never settled");
                output.WriteLine($"system {system.Id}: started and seeded {catalogue.SeededStock.Count:N0} SKUs and {catalogue.SeededBalances.Count:N0} accounts in {clock.Elapsed.TotalSeconds:0.0} s");
            }));
            NpgsqlConnection.ClearAllPools();
            var ledgers = systems.ToDictionary(s => s.Id, _ => new ConservationLedger(catalogue));
            var runNumber = 0;
            foreach (var workload in options.Workloads)
            foreach (var concurrency in options.Concurrency)
            for (var round = 1; round <= options.Rounds; round++)
            {
                var streamSeed = StreamSeed(options.Seed, workload, concurrency, round);
                foreach (var system in systems)
                {
                    var result = await RunOnceAsync(system, ledgers[system.Id], catalogue, postgres, postmasterPid, storageCounter, workload, concurrency, round, ++runNumber, streamSeed, cancellationToken);
                    runs.Add(result);
                    output.WriteLine(ProgressLine(result));
                    if (!result.Conservation.Ok)
                    {
                        var message = $"CONSERVATION VIOLATION in system {system.Id}, run {result.RunNumber} ({workload.Name()}, {concurrency} callers, round {round}):\n  "
                                      + string.Join("\n  ", result.Conservation.Violations);
                        throw new ConservationViolationException(message);
                    }
                }
            }
        }
        finally
        {
            foreach (var system in systems) await system.DisposeAsync();
            NpgsqlConnection.ClearAllPools();
        }

        MemoryResult? memory = null;
        string? memoryError = null;
        if (options.MemoryActivations > 0)
        {
            output.WriteLine($"memory: activating {options.MemoryActivations:N0} idle participants of system A in a fresh process");
            try
            {
                memory = await MemoryChildProcess.RunAsync(postgres.AdminConnectionString, options.MemoryActivations, options.Configuration, cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                memoryError = ex.GetBaseException().Message;
                output.WriteLine($"memory: FAILED - {memoryError}");
            }
        }

        var descriptions = systems.Select(s => (s.Id, s.Description)).ToList();
        return new BenchmarkReport(options, CommandText(options), started, DateTimeOffset.UtcNow, machine, descriptions, catalogue, runs, memory, memoryError);
    }

    private async Task<IOrderSystem> CreateSystemAsync(string id, BenchmarkPostgres postgres, CancellationToken cancellationToken) => id switch
    {
        "A" => new TwoPhaseCommitSystem(id, await postgres.ProvisionTwoPhaseCommitAsync("a", cancellationToken), configuration),
        TwoPhaseCommitSystem.AdoNetId => new TwoPhaseCommitSystem(id, await postgres.ProvisionTwoPhaseCommitAsync("aado", cancellationToken), configuration),
        "B" => new OrleansTransactionsSystem(await postgres.ProvisionOrleansTransactionsAsync("b", cancellationToken), configuration),
        "C" => new SingleDatabaseSystem(await postgres.ProvisionPlainAsync("c", cancellationToken), options.Concurrency.Max()),
        _ => throw new ArgumentOutOfRangeException(nameof(id), id, "unknown system"),
    };

    private async Task<RunResult> RunOnceAsync(IOrderSystem system, ConservationLedger ledger, Catalogue catalogue, BenchmarkPostgres postgres,
        int? postmasterPid, GrainStorageCounter storageCounter, WorkloadKind workload, int concurrency, int round, int runNumber, ulong streamSeed,
        CancellationToken cancellationToken)
    {
        var prefix = $"{system.Id}.r{runNumber:000}.";
        var loadAtStart = ProcessCpu.LoadAverage();
        var wallClock = Stopwatch.StartNew();
        // The previous run closed every pooled connection (its backends published their counters as they exited).
        await ConnectionWarmer.WarmAsync(system.Databases, concurrency, cancellationToken);
        var before = await PostgresActivity.ReadAsync(postgres.AdminConnectionString, system.Databases, cancellationToken);

        IReadOnlyList<PlacedOrder> warmUp = [];
        if (options.WarmUp > TimeSpan.Zero)
            warmUp = (await ClosedLoopDriver.RunAsync(system, new OrderStream(catalogue, workload, ~streamSeed, prefix + "w."), concurrency, options.WarmUp, cancellationToken)).Orders;

        var cpuBefore = CpuSample.Take(postmasterPid);
        storageCounter.RestartLargestWrite();
        var storageBefore = storageCounter.Current;
        var measured = await ClosedLoopDriver.RunAsync(system, new OrderStream(catalogue, workload, streamSeed, prefix + "m."), concurrency, options.Duration, cancellationToken);
        await Task.Delay(Drain, cancellationToken);
        var cpu = CpuSample.Take(postmasterPid) - cpuBefore;
        var storage = storageCounter.Current - storageBefore;
        var loadAtEnd = ProcessCpu.LoadAverage();

        var settled = await system.WaitUntilSettledAsync(SettleTimeout, cancellationToken);
        var activations = await system.ActivationCountAsync();
        // Live heap of the whole process (every system's silo and the load generator) after a full collection.
        var heapBytes = GC.GetTotalMemory(forceFullCollection: true);
        // A busy-then-idle backend may sit on its counters for up to 10 s (PGSTAT_IDLE_INTERVAL); one that
        // exits publishes them at once. Closing the idle pooled connections makes the reading exact.
        NpgsqlConnection.ClearAllPools();
        await Task.Delay(StatisticsDelay, cancellationToken);
        var activity = await PostgresActivity.ReadAsync(postgres.AdminConnectionString, system.Databases, cancellationToken) - before;

        var allOrders = warmUp.Concat(measured.Orders).ToList();
        var stored = await system.ReadStoredStateAsync(catalogue, prefix, cancellationToken);
        var conservation = ledger.Check(allOrders, stored, settled);
        NpgsqlConnection.ClearAllPools();
        var overhead = wallClock.Elapsed - options.WarmUp - measured.Elapsed;

        var (committed, aborted, failed, reasons) = RunResult.Count(measured.Orders);
        var committedInWindow = measured.Orders.Count(o => o.Attempt.Kind == OrderAttemptKind.Committed && o.AnsweredAt <= options.Duration);
        var latency = LatencyPercentiles.From(measured.Orders.Where(o => o.Attempt.Kind != OrderAttemptKind.Failed).Select(o => o.Latency));
        // Database counters span the warm-up too (no pause between the two), so they are divided by both parts' commits.
        var committedInDatabaseWindow = allOrders.Count(o => o.Attempt.Kind == OrderAttemptKind.Committed);
        return new RunResult(runNumber, system.Id, workload, concurrency, round, options.Duration, measured.Elapsed, committedInWindow, committed, aborted, failed, reasons,
            latency, activity, committedInDatabaseWindow, cpu, storage, loadAtStart, loadAtEnd, conservation, warmUp.Count, overhead, activations, heapBytes);
    }

    /// <summary>The same orders for every system of one round; other orders in every other cell and round.</summary>
    private static ulong StreamSeed(int seed, WorkloadKind workload, int concurrency, int round) =>
        (ulong)(uint)seed * 1_000_003UL + (ulong)workload * 10_007UL + (ulong)concurrency * 101UL + (ulong)round;

    private static string ProgressLine(RunResult r)
    {
        var failure = r.Failed > 0 ? $"; first failure: {r.FailureReasons[0].Reason}" : "";
        return string.Create(CultureInfo.InvariantCulture,
            $"run {r.RunNumber,3} {r.Workload.Name(),-11} {r.Concurrency,3} callers round {r.Round} {r.SystemId}: " +
            $"{r.CommittedPerSecond,7:0.0} committed/s, aborted {r.Aborted}, failed {r.Failed}, p50 {r.Latency.P50Ms:0.0} ms, p99 {r.Latency.P99Ms:0.0} ms, " +
            $"WAL flushes/order {r.WalSyncsPerCommitted:0.00}, rows/order {r.RowsPerCommitted:0.00}, xact/order {r.TransactionsPerCommitted:0.00}, " +
            $"CPU ms/order {r.CpuMsPerCommitted:0.00} (machine {r.MachineCpuMsPerCommitted:0.00}{(r.Cpu.Noisy ? $", NOISY: {r.Cpu.OtherCores:0.00} cores used by others" : "")}), " +
            $"state reads/writes per order {r.StateReadsPerCommitted:0.00}/{r.StateWritesPerCommitted:0.00}{(r.Storage.LargestWriteBytes is { } largest ? $", largest state write {largest} B" : "")}, load {r.LoadAtStart?.One:0.00}->{r.LoadAtEnd?.One:0.00}, " +
            $"conservation {(r.Conservation.Ok ? "ok" : "VIOLATED")} ({r.Conservation.Shipments} shipments), " +
            $"{(r.ActivationsAfter is { } active ? $"{active} activations after it, " : "")}process heap {r.HeapBytesAfter / 1048576.0:0} MiB after it, " +
            $"{r.WarmUpOrders} warm-up orders, {r.Overhead.TotalSeconds:0.0} s checks{failure}");
    }

    /// <summary>The one command, as it would be typed from the repository root (connection strings hidden).</summary>
    public static string CommandText(BenchmarkOptions options)
    {
        var arguments = new List<string>();
        var hideNext = false;
        foreach (var argument in options.RawArguments)
        {
            var isConnectionString = argument.StartsWith("--ConnectionStrings:", StringComparison.OrdinalIgnoreCase);
            if (hideNext) arguments.Add("***");
            else if (isConnectionString && argument.Contains('=')) arguments.Add(argument[..(argument.IndexOf('=') + 1)] + "***");
            else arguments.Add(argument.Contains(' ') ? $"\"{argument}\"" : argument);
            hideNext = !hideNext && isConnectionString && !argument.Contains('=');
        }
        var command = "dotnet run -c Release --project src/OrleansTwoPC.Benchmark";
        return arguments.Count == 0 ? command : $"{command} -- {string.Join(' ', arguments)}";
    }
}
