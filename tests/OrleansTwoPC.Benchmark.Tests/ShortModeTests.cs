using System.Globalization;

namespace OrleansTwoPC.Benchmark.Tests;

/// <summary>
/// The short mode end to end: its own embedded PostgreSQL, every system (A on both grain storages), every workload, a memory
/// measurement. Asserts that the harness works — orders committed in every cell, conservation checked,
/// markdown written — and nothing about speed.
/// </summary>
public sealed class ShortModeTests
{
    private static readonly string[] Systems = ["A", "A-adonet", "B", "C"];
    private static readonly string[] Workloads = ["uniform", "hot", "abort-heavy"];

    [Fact]
    public async Task Short_mode_runs_every_cell_checks_conservation_and_writes_the_report()
    {
        var directory = Directory.CreateTempSubdirectory("benchmark-test-");
        try
        {
            var reportPath = Path.Combine(directory.FullName, "benchmarks.md");
            var run = await BenchmarkProgram.RunAsync(TimeSpan.FromMinutes(4), "--mode", "short", "--output", reportPath);

            Assert.True(run.ExitCode == 0, $"exit code {run.ExitCode}\n{run.Output}\n{run.Errors}");
            Assert.DoesNotContain("VIOLATION", run.Output);
            Assert.True(File.Exists(reportPath), "no report written");
            var report = await File.ReadAllTextAsync(reportPath);

            var runs = EveryRunRows(report);
            foreach (var workload in Workloads)
            foreach (var system in Systems)
            {
                var cell = runs.Where(r => r.Workload == workload && r.System == system).ToList();
                Assert.True(cell.Count == 1, $"expected one run of {system} on {workload}, found {cell.Count}");
                Assert.True(cell[0].Committed > 0, $"{system} committed nothing on {workload}");
                Assert.True(cell[0].ShipmentsChecked >= cell[0].Committed, $"{system} on {workload}: fewer shipments checked than committed orders");
                // Every committed order is at least one PostgreSQL transaction in the system's own databases.
                Assert.True(cell[0].Transactions >= cell[0].Committed, $"{system} on {workload}: {cell[0].Transactions} PostgreSQL transactions for {cell[0].Committed} committed orders");
                // CPU is read per process: this process and the embedded PostgreSQL both did work.
                Assert.True(cell[0].ProcessCpu > 0 && cell[0].PostgresCpu > 0, $"{system} on {workload}: CPU per process {cell[0].ProcessCpu} + {cell[0].PostgresCpu}");
            }
            // The silos' activations are counted after every run; C has no silo.
            Assert.All(runs.Where(r => r.System != "C"), r => Assert.True(int.TryParse(r.ActivationsAfter, out var n) && n > 0, $"{r.System}: activations after '{r.ActivationsAfter}'"));
            Assert.All(runs.Where(r => r.System == "C"), r => Assert.Equal("–", r.ActivationsAfter));
            // Abort-heavy refuses 30 % of its orders: the refusals must be counted as aborts in every system.
            Assert.All(runs.Where(r => r.Workload == "abort-heavy"), r => Assert.True(r.Aborted > 0, $"{r.System} counted no abort on abort-heavy"));
            Assert.All(runs.Where(r => r.Workload != "abort-heavy"), r => Assert.Equal(0, r.Aborted));

            Assert.Contains("Result: **no violation**", report);
            Assert.Contains("## Machine", report);
            Assert.Contains("## Headline ratios", report);
            Assert.Contains("| A / A-adonet committed orders/s, uniform @4 |", report);
            Assert.Contains("## Memory: idle participant activations (system A)", report);
            Assert.Contains("| GC heap size |", report);
            Assert.Contains("CPU counted per process", run.Output);
            // Grain state reads and writes per order are counted (Orleans' storage meter): A writes state for every order.
            var uniformA = report.Split('\n').First(line => System.Text.RegularExpressions.Regex.IsMatch(line, @"^\| \d+ \| A \|"));
            var writesPerOrder = uniformA.Split('|')[13].Split(" / ")[1].Trim().Split(' ')[0];
            Assert.True(Double(writesPerOrder) > 0, $"A's state writes per order not counted: {uniformA}");
            // A's batched storage reports its largest single write; A-adonet's storage does not.
            Assert.Matches(@"\(largest \d+ B\)", uniformA);
            Assert.Matches(@"\| A largest single state write, hot @4 \| \d+ B \|", report);
            // The same report goes to stdout.
            Assert.Contains("## Results", run.Output);
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    [Theory]
    [InlineData("--mode", "fast")]
    [InlineData("--concurrency", "0")]
    [InlineData("--no-such-flag", "1")]
    [InlineData("--workloads", "uniform,cold")]
    public async Task Bad_flags_print_one_error_line_and_exit_2(string flag, string value)
    {
        var run = await BenchmarkProgram.RunAsync(TimeSpan.FromMinutes(1), flag, value);

        Assert.Equal(2, run.ExitCode);
        var lines = run.Errors.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Single(lines);
        Assert.StartsWith("error: ", lines[0]);
    }

    private sealed record RunRow(string Workload, string System, int Committed, int Aborted, int ShipmentsChecked, int Transactions, double ProcessCpu, double PostgresCpu, string ActivationsAfter);

    /// <summary>The "Every run" table: | run | workload | callers | round | system | seconds | committed | aborted | failed | ... | shipments checked |</summary>
    private static List<RunRow> EveryRunRows(string report)
    {
        var table = report[report.IndexOf("<details><summary>Every run</summary>", StringComparison.Ordinal)..];
        return table.Split('\n')
            .Select(line => line.Trim())
            .Where(line => line.StartsWith('|') && char.IsAsciiDigit(line.TrimStart('|', ' ').FirstOrDefault()))
            .Select(line => line.Trim('|').Split('|').Select(cell => cell.Trim()).ToArray())
            .Select(cells => new RunRow(cells[1], cells[4], Int(cells[6]), Int(cells[7]), Int(cells[^1]), Int(cells[14]),
                Double(cells[15].Split('+')[0]), Double(cells[15].Split('+')[1]), cells[^2]))
            .ToList();
    }

    private static int Int(string text) => int.Parse(text, CultureInfo.InvariantCulture);

    private static double Double(string text) => double.Parse(text.Trim(), CultureInfo.InvariantCulture);
}
