using System.Globalization;
using System.Text;
using OrleansTwoPC.Benchmark.Cli;
using OrleansTwoPC.Benchmark.Measurement;
using OrleansTwoPC.Benchmark.Memory;
using OrleansTwoPC.Benchmark.Systems.A;
using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark.Reporting;

/// <summary>Renders the report as markdown: machine, systems, headline ratios, one table per workload, memory, method, every run.</summary>
public static class MarkdownReport
{
    public static string Render(BenchmarkReport report)
    {
        var cells = CellSummary.From(report.Runs);
        var memoryOnly = report.Options.Mode == BenchmarkMode.Memory;
        var text = new StringBuilder();
        text.AppendLine(memoryOnly
            ? "# Benchmark: memory of idle participant activations (OrleansTwoPC)"
            : "# Benchmark: OrleansTwoPC vs Orleans Transactions vs one PostgreSQL transaction");
        text.AppendLine();
        text.AppendLine("Written by the benchmark program in `src/OrleansTwoPC.Benchmark`; rerun it rather than editing this file.");
        text.AppendLine();
        text.AppendLine($"- Date: {report.StartedAt.UtcDateTime:yyyy-MM-dd HH:mm} UTC, {(report.FinishedAt - report.StartedAt).TotalMinutes:0.0} minutes");
        text.AppendLine($"- Command: `{report.Command}`");
        if (!memoryOnly) text.AppendLine($"- Mode: {report.Options.Mode.ToString().ToLowerInvariant()}; " + Plan(report.Options));
        text.AppendLine();

        AppendMachine(text, report.Machine);
        if (!memoryOnly)
        {
            AppendSystems(text, report);
            AppendRatios(text, report, cells);
            AppendResults(text, cells);
            AppendConservation(text, report);
            AppendFailures(text, cells);
        }
        AppendMemory(text, report.Memory, report.MemoryError);
        if (!memoryOnly)
        {
            AppendMethod(text);
            AppendEveryRun(text, report.Runs);
        }
        return text.ToString();
    }

    private static string Plan(BenchmarkOptions o) =>
        $"workloads {string.Join(", ", o.Workloads.Select(w => w.Name()))}; " +
        $"closed-loop callers {string.Join(", ", o.Concurrency)}; " +
        $"{Seconds(o.Duration)} measured after {Seconds(o.WarmUp)} warm-up per run; {o.Rounds} round{(o.Rounds == 1 ? "" : "s")}; " +
        $"systems {string.Join(" ", o.Systems)} alternating within each cell.";

    private static void AppendMachine(StringBuilder text, MachineDescription m)
    {
        text.AppendLine("## Machine");
        text.AppendLine();
        text.AppendLine("| | |");
        text.AppendLine("|---|---|");
        text.AppendLine($"| CPU | {m.Cores} cores ({m.CpuModel}) |");
        text.AppendLine($"| Memory | {m.Memory} |");
        text.AppendLine($"| OS | {m.OperatingSystem} |");
        text.AppendLine($"| PostgreSQL | {m.PostgresVersion}; {m.PostgresSource} |");
        text.AppendLine($"| PostgreSQL settings | {string.Join(", ", m.PostgresSettings.Select(s => $"{s.Name}={s.Value}"))} |");
        text.AppendLine($"| .NET | {m.DotNet}, {m.GarbageCollector}, {m.Build} build, Orleans {m.OrleansVersion} |");
        text.AppendLine($"| Load average at start | {m.LoadAverageAtStart} (1, 5, 15 min) |");
        text.AppendLine();
        text.AppendLine("PostgreSQL, the silos and the load generator share this machine. CPU per order counts the system's own processes " +
                        "(this process and PostgreSQL, from `/proc/<pid>/stat`); a run in which other processes used more than " +
                        $"{CpuUsage.NoisyCores:0.00} cores on average is flagged noisy, and its figures should not be published.");
        text.AppendLine();
    }

    private static void AppendSystems(StringBuilder text, BenchmarkReport report)
    {
        text.AppendLine("## Systems");
        text.AppendLine();
        foreach (var (id, description) in report.Systems) text.AppendLine($"- **{id}**: {description}");
        text.AppendLine();
        if (report.Catalogue is { } catalogue)
        {
            text.AppendLine($"Same orders for every system: one SKU line (1–3 units, fixed price per SKU), one account, one shipment. " +
                            $"Catalogue: {catalogue.UniformSkus.Count:N0} SKUs and {catalogue.UniformAccounts.Count:N0} accounts with ample stock and money, " +
                            $"{Catalogue.HotSkuCount} hot SKUs, {Catalogue.EmptySkuCount} SKUs with no stock and {Catalogue.PoorAccountCount} accounts with no money. " +
                            "*uniform*: SKU and account uniform over the large ranges, nothing aborts; *hot*: the 3 hot SKUs take every order, accounts uniform; " +
                            $"*abort-heavy*: of every {OrderStream.AbortCycle} orders {OrderStream.NoStockSlots} ask a SKU with no stock and {OrderStream.NoFundsSlots} charge an account with no money (30 % refused), the rest as uniform.");
            text.AppendLine();
        }
    }

    private static void AppendRatios(StringBuilder text, BenchmarkReport report, IReadOnlyList<CellSummary> cells)
    {
        var at = report.RatioConcurrency;
        CellSummary? Cell(WorkloadKind workload, string system) =>
            cells.FirstOrDefault(c => c.Workload == workload && c.Concurrency == at && c.SystemId == system);
        string Ratio(double top, double bottom) => double.IsNaN(top) || double.IsNaN(bottom) || bottom == 0 ? "n/a" : (top / bottom).ToString("0.00", CultureInfo.InvariantCulture);
        string Throughput(WorkloadKind workload, string top, string bottom) =>
            Cell(workload, top) is { } t && Cell(workload, bottom) is { } b ? Ratio(t.CommittedPerSecond.Median, b.CommittedPerSecond.Median) : "n/a (not run)";

        text.AppendLine($"## Headline ratios ({at} callers, medians)");
        text.AppendLine();
        if (at != 32) text.AppendLine($"The 32-caller cells were not run; the ratios below are at {at} callers.\n");
        text.AppendLine("| ratio | value |");
        text.AppendLine("|---|---|");
        text.AppendLine($"| A / B committed orders/s, uniform @{at} | {Throughput(WorkloadKind.Uniform, "A", "B")} |");
        var p99 = Cell(WorkloadKind.Uniform, "A") is { } a && Cell(WorkloadKind.Uniform, "B") is { } b ? Ratio(a.P99.Median, b.P99.Median) : "n/a (not run)";
        text.AppendLine($"| A p99 / B p99 latency, uniform @{at} | {p99} |");
        text.AppendLine($"| A / B committed orders/s, hot @{at} | {Throughput(WorkloadKind.Hot, "A", "B")} |");
        text.AppendLine($"| A / C committed orders/s, uniform @{at} | {Throughput(WorkloadKind.Uniform, "A", "C")} |");
        if (cells.Any(c => c.SystemId == TwoPhaseCommitSystem.AdoNetId))
            text.AppendLine($"| A / A-adonet committed orders/s, uniform @{at} | {Throughput(WorkloadKind.Uniform, "A", TwoPhaseCommitSystem.AdoNetId)} |");
        var own = Cell(WorkloadKind.Uniform, "A") is { } ua ? Format(ua.CpuMsPerOrder, "0.00") : "n/a (not run)";
        text.AppendLine($"| A CPU ms per committed order (own processes), uniform @{at} | {own} |");
        var largestHot = Cell(WorkloadKind.Hot, "A")?.LargestWriteBytes is { } bytes ? $"{bytes} B" : "n/a (not run, or not the batched storage)";
        text.AppendLine($"| A largest single state write, hot @{at} | {largestHot} |");
        var noisy = report.Runs.Count(r => r.Cpu.Noisy);
        text.AppendLine($"| runs flagged noisy | {noisy} of {report.Runs.Count} |");
        text.AppendLine();
    }

    private static void AppendResults(StringBuilder text, IReadOnlyList<CellSummary> cells)
    {
        text.AppendLine("## Results");
        text.AppendLine();
        text.AppendLine("Median over the rounds, with the range (min–max) in brackets. Per-order figures are per **committed** order and include " +
                        "everything the system made the machine and PostgreSQL do (aborted orders, phase two, confirmations): CPU over the measured window, " +
                        "WAL and rows over warm-up and measured window together (see below).");
        text.AppendLine();
        foreach (var workload in cells.Select(c => c.Workload).Distinct())
        {
            text.AppendLine($"### {workload.Name()}");
            text.AppendLine();
            text.AppendLine("| callers | system | committed orders/s | p50 ms | p95 ms | p99 ms | aborted / run | failed (all rounds) | WAL flushes / order | rows written / order | WAL KiB / order | PostgreSQL transactions / order | state reads / writes per order | CPU ms / order (own processes) | CPU ms / order (machine) | noisy runs |");
            text.AppendLine("|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var cell in cells.Where(c => c.Workload == workload))
            {
                // C has no grain state.
                var storage = cell.SystemId != "C" ? $"{Format(cell.StateReadsPerOrder, "0.00")} / {Format(cell.StateWritesPerOrder, "0.00")}" : "–";
                if (cell.LargestWriteBytes is { } largest) storage += $" (largest {largest} B)";
                text.AppendLine($"| {cell.Concurrency} | {cell.SystemId} | {Format(cell.CommittedPerSecond, "0.0")} | {Format(cell.P50, "0.0")} | {Format(cell.P95, "0.0")} | " +
                                $"{Format(cell.P99, "0.0")} | {Format(cell.Aborted, "0")} | {cell.FailedTotal} | {Format(cell.WalSyncsPerOrder, "0.00")} | " +
                                $"{Format(cell.RowsPerOrder, "0.00")} | {Format(cell.WalKilobytesPerOrder, "0.0")} | {Format(cell.TransactionsPerOrder, "0.00")} | {storage} | " +
                                $"{Format(cell.CpuMsPerOrder, "0.00")} | {Format(cell.MachineCpuMsPerOrder, "0.00")} | {cell.NoisyRuns} of {cell.Runs.Count} |");
            }
            text.AppendLine();
        }
    }

    private static void AppendConservation(StringBuilder text, BenchmarkReport report)
    {
        text.AppendLine("## Conservation");
        text.AppendLine();
        var failedApplied = report.Runs.Sum(r => r.Conservation.FailedButApplied);
        text.AppendLine($"Checked after every one of the {report.Runs.Count} runs, straight from each system's PostgreSQL databases, over the warm-up and measured orders: " +
                        "every order answered committed has a shipment, no order answered aborted has one, every shipment belongs to an order of the run, " +
                        "and per SKU and per account what shipped orders took out plus what remains equals what was seeded. " +
                        $"Result: **no violation** ({report.Runs.Sum(r => r.Conservation.Shipments):N0} shipments checked; " +
                        $"{failedApplied} order{(failedApplied == 1 ? "" : "s")} whose caller saw a failure had nevertheless applied everywhere).");
        text.AppendLine();
    }

    private static void AppendFailures(StringBuilder text, IReadOnlyList<CellSummary> cells)
    {
        var failing = cells.Where(c => c.FailedTotal > 0).ToList();
        if (failing.Count == 0) return;
        text.AppendLine("## Failures");
        text.AppendLine();
        text.AppendLine("Orders that were neither committed nor refused for stock or funds (counted in *failed*, not in *aborted*; the callers do not retry):");
        text.AppendLine();
        text.AppendLine("| workload | callers | system | count | reason |");
        text.AppendLine("|---|---:|:---:|---:|---|");
        foreach (var cell in failing)
        {
            var reasons = cell.Runs.SelectMany(r => r.FailureReasons)
                .GroupBy(r => r.Reason).Select(g => (Reason: g.Key, Count: g.Sum(x => x.Count)))
                .OrderByDescending(r => r.Count).Take(3);
            foreach (var (reason, count) in reasons)
                text.AppendLine($"| {cell.Workload.Name()} | {cell.Concurrency} | {cell.SystemId} | {count} | {Escape(reason)} |");
        }
        text.AppendLine();
    }

    private static void AppendMemory(StringBuilder text, MemoryResult? memory, string? error)
    {
        if (memory is null && error is null) return;
        text.AppendLine("## Memory: idle participant activations (system A)");
        text.AppendLine();
        if (memory is null)
        {
            text.AppendLine($"Not measured: {error}");
            text.AppendLine();
            return;
        }
        text.AppendLine($"A fresh process hosting only A's silo activates {memory.RequestedActivations:N0} participants " +
                        $"({memory.InventoryActivations:N0} inventory and {memory.PaymentActivations:N0} payment grains, one `GetSnapshot` each: one state read, no write) " +
                        $"in {memory.ActivationSeconds:0.0} s, then forces a full blocking, compacting GC ({(memory.ServerGc ? "server" : "workstation")} GC).");
        text.AppendLine();
        text.AppendLine("| | silo started, no participants | with the idle participants | per activation |");
        text.AppendLine("|---|---:|---:|---:|");
        text.AppendLine($"| GC heap size | {Megabytes(memory.BaselineGcHeapBytes)} | {Megabytes(memory.LoadedGcHeapBytes)} | {memory.GcHeapBytesPerActivation:N0} B |");
        text.AppendLine($"| process working set | {Megabytes(memory.BaselineWorkingSetBytes)} | {Megabytes(memory.LoadedWorkingSetBytes)} | {memory.WorkingSetBytesPerActivation:N0} B |");
        text.AppendLine();
        text.AppendLine($"Live objects after the GC: {Megabytes(memory.LoadedLiveObjectBytes)}. Activations counted by Orleans' management grain: {memory.ActivationCountReportedByOrleans:N0} " +
                        "(including the silo's own system grains).");
        text.AppendLine();
    }

    private static void AppendMethod(StringBuilder text)
    {
        text.AppendLine("## How the figures are measured");
        text.AppendLine();
        text.AppendLine("- One process hosts A's silo (the product's `AddTwoPhaseCommit`), B's silo (`UseTransactions()`, three `AddAdoNetGrainStorage` providers) and the load generator; C talks to PostgreSQL through Npgsql. Grain calls take no network hop for A or B.");
        text.AppendLine("- Closed loop: N callers each place their next order as soon as the previous one is answered. *committed orders/s* = orders committed within the measured window / its length; orders still in flight when it closes are waited for and count in latency, CPU, database figures and conservation, not in the rate. A caller does not retry a failed order.");
        text.AppendLine("- Each run: the system's connection pools filled (one connection per caller, up to the pool size; reads only), PostgreSQL counters read, warm-up on the same system, measured load right after it, 0.5 s drain, the settle check (nothing prepared but unapplied), every pooled connection closed, 1 s pause, counters read again (`pg_stat_clear_snapshot()` before each read), conservation check.");
        text.AppendLine("- PostgreSQL 15 backends publish their statistics asynchronously, and one that goes idle after a burst can hold them for up to 10 s (`PGSTAT_IDLE_INTERVAL`); a backend that exits publishes them at once. Hence the closed connections, and hence the database counters span warm-up and measured load together and are divided by the orders committed in both.");
        text.AppendLine("- Latency: nearest-rank percentiles over every answered order of the measured window (committed and refused).");
        text.AppendLine("- *WAL flushes / order*: delta of `pg_stat_wal.wal_sync` (server-wide) / committed orders. *rows written / order*: delta of `n_tup_ins + n_tup_upd + n_tup_del` from `pg_stat_user_tables`, summed over the system's own databases. *WAL KiB / order*: delta of `pg_stat_wal.wal_bytes`.");
        text.AppendLine("- *PostgreSQL transactions / order*: delta of `pg_stat_database.xact_commit` summed over the system's own databases / committed orders (the counter readings' own few transactions included).");
        text.AppendLine("- *state reads / writes per order* (A and B; C has no grain state): grain state reads and writes recorded by Orleans' own meter (`orleans-storage-read-latency`, `orleans-storage-write-latency`) during the measured load and drain, per committed order; with the batched storage, the largest single grain write of the cell (its head row plus changed entry rows, bytes as sent, from the storage's `twopc.storage.write.bytes` histogram) in brackets.");
        text.AppendLine("- *CPU ms / order (own processes)*: user + system time of this process (the silos and the load generator) and of the PostgreSQL server (the postmaster, its live children and its reaped children, from `/proc/<pid>/stat`) from the start of the measured load to the end of the drain, per committed order. *(machine)*: busy CPU of the whole machine (`/proc/stat`) over the same window. A run is *noisy* when the machine's busy time exceeds the two processes' by more than " +
                        $"{CpuUsage.NoisyCores:0.00} cores on average: something else was running. The load average is recorded at the start and end of every run.");
        var defaults = new OrleansTwoPC.Protocol.ProtocolOptions();
        text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"- A runs with the product defaults (`TwoPC:Protocol:*` not set: prepare timeout {defaults.PrepareTimeout.TotalSeconds:0.###} s, decision retention {defaults.DecisionRetention.TotalSeconds:0.###} s, at most {defaults.MaxStepsPerWrite} steps per participant write; A-adonet the same on `TwoPC:Storage:Provider=adonet`), and its four databases provisioned as the product provisions them, which sets `commit_delay = {OrleansTwoPC.Storage.GroupCommitSettings.DefaultCommitDelayMicroseconds}` µs and `commit_siblings = 1` on each (PostgreSQL's group commit; the server-wide settings above apply to B and C)") + "; B with Orleans' defaults (`TransactionalStateOptions`, the ADO.NET provider's default JSON serializer, `[Reentrant]` participants as in Orleans' samples, no load shedding); C with READ COMMITTED and auto-prepared statements.");
        text.AppendLine();
    }

    private static void AppendEveryRun(StringBuilder text, IReadOnlyList<RunResult> runs)
    {
        text.AppendLine("<details><summary>Every run</summary>");
        text.AppendLine();
        text.AppendLine("| run | workload | callers | round | system | seconds (with wind-down) | committed | aborted | failed | committed orders/s | p50 ms | p99 ms | WAL flushes | rows | PostgreSQL transactions | CPU s (this process + PostgreSQL) | CPU s (machine) | other cores | load average start → end | activations after | shipments checked |");
        text.AppendLine("|---:|---|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        foreach (var r in runs)
        {
            text.AppendLine(string.Create(CultureInfo.InvariantCulture,
                $"| {r.RunNumber} | {r.Workload.Name()} | {r.Concurrency} | {r.Round} | {r.SystemId} | {r.Elapsed.TotalSeconds:0.00} | {r.Committed} | {r.Aborted} | {r.Failed} | " +
                $"{r.CommittedPerSecond:0.0} | {r.Latency.P50Ms:0.0} | {r.Latency.P99Ms:0.0} | {r.Activity.WalSyncs} | {r.Activity.RowsWritten} | {r.Activity.TransactionsCommitted} | " +
                $"{r.Cpu.ProcessSeconds:0.00} + {(r.Cpu.PostgresSeconds is { } pg ? pg.ToString("0.00", CultureInfo.InvariantCulture) : "n/a")} | {r.Cpu.MachineSeconds:0.00} | " +
                $"{(r.Cpu.OtherCores is { } other ? other.ToString("0.00", CultureInfo.InvariantCulture) : "n/a")}{(r.Cpu.Noisy ? " (noisy)" : "")} | " +
                $"{r.LoadAtStart?.One:0.00} → {r.LoadAtEnd?.One:0.00} | {(r.ActivationsAfter is { } active ? active.ToString(CultureInfo.InvariantCulture) : "–")} | {r.Conservation.Shipments} |"));
        }
        text.AppendLine();
        text.AppendLine("</details>");
    }

    private static string Format(Spread spread, string format)
    {
        if (double.IsNaN(spread.Median)) return "–";
        var median = spread.Median.ToString(format, CultureInfo.InvariantCulture);
        return spread.Min == spread.Max ? median
            : $"{median} ({spread.Min.ToString(format, CultureInfo.InvariantCulture)}–{spread.Max.ToString(format, CultureInfo.InvariantCulture)})";
    }

    private static string Seconds(TimeSpan time) => $"{time.TotalSeconds.ToString("0.##", CultureInfo.InvariantCulture)} s";

    private static string Megabytes(long bytes) => $"{bytes / 1024.0 / 1024.0:N1} MiB";

    private static string Escape(string text) => text.Replace("|", "\\|").Replace("\n", " ").Replace("\r", "");
}
