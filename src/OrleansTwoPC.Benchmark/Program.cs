using System.Text.Json;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using OrleansTwoPC.Benchmark;
using OrleansTwoPC.Benchmark.Cli;
using OrleansTwoPC.Benchmark.Infrastructure;
using OrleansTwoPC.Benchmark.Memory;
using OrleansTwoPC.Benchmark.Reporting;

// One command runs the whole comparison (see CommandLine.Usage); exit codes 0 ok, 1 violation or failure, 2 usage.
if (args.Any(a => a is "-h" or "--help" or "help"))
{
    Console.WriteLine(CommandLine.Usage);
    return 0;
}

BenchmarkOptions options;
try
{
    options = CommandLine.Parse(args);
    if (options.Mode == BenchmarkMode.Full && MachineDescription.BuildConfiguration() != "Release")
        throw new UsageException($"--mode full measures performance and needs a Release build (this is {MachineDescription.BuildConfiguration()}): dotnet run -c Release --project src/OrleansTwoPC.Benchmark -- --mode full");
}
catch (UsageException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 2;
}

// Environment first, command line last: ConnectionStrings__PostgresServer works like in the product.
var configuration = new ConfigurationBuilder()
    .AddEnvironmentVariables()
    .AddInMemoryCollection(options.Configuration)
    .Build();
using var loggers = LoggerFactory.Create(b => b.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(LogLevel.Warning));
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cancel.Cancel();
};

try
{
    if (options.Mode == BenchmarkMode.Memory) return await RunMemoryModeAsync(options, configuration, loggers, cancel.Token);

    var report = await new BenchmarkSession(options, configuration, loggers, Console.Out).RunAsync(cancel.Token);
    var markdown = MarkdownReport.Render(report);
    Console.WriteLine();
    Console.WriteLine(markdown);
    WriteReport(options.OutputPath, markdown);
    return report.MemoryError is null ? 0 : 1;
}
catch (ConservationViolationException ex)
{
    // Loud on both streams: these numbers must not be used.
    Console.WriteLine(ex.Message);
    Console.Error.WriteLine(ex.Message);
    Console.Error.WriteLine("RESULT: FAILED - conservation violated; no report written");
    return 1;
}
catch (OperationCanceledException) when (cancel.IsCancellationRequested)
{
    Console.Error.WriteLine("cancelled; PostgreSQL and the silos were stopped");
    return 130;
}
catch (Exception ex)
{
    Console.Error.WriteLine($"error: {ex.GetBaseException().Message}");
    Console.Error.WriteLine(ex);
    return 1;
}

static async Task<int> RunMemoryModeAsync(BenchmarkOptions options, IConfiguration configuration, ILoggerFactory loggers, CancellationToken cancellationToken)
{
    var started = DateTimeOffset.UtcNow;
    var prefix = "benchmem" + started.ToString("yyMMddHHmmss", System.Globalization.CultureInfo.InvariantCulture);
    await using var postgres = await BenchmarkPostgres.StartAsync(
        configuration[BenchmarkPostgres.ServerConnectionStringKey], prefix, loggers.CreateLogger("OrleansTwoPC.Benchmark.Postgres"), cancellationToken);
    var databases = await postgres.ProvisionTwoPhaseCommitAsync("a", cancellationToken);
    var result = await MemoryProbe.RunAsync(databases, configuration, options.MemoryActivations, Console.Out, cancellationToken);
    if (options.EmitMemoryJson)
    {
        Console.WriteLine(MemoryChildProcess.ResultMarker + JsonSerializer.Serialize(result));
        return 0;
    }
    var machine = await MachineDescription.ReadAsync(postgres, cancellationToken);
    var report = new BenchmarkReport(options, BenchmarkSession.CommandText(options), started, DateTimeOffset.UtcNow, machine, [], null, [], result, null);
    var markdown = MarkdownReport.Render(report);
    Console.WriteLine(markdown);
    WriteReport(options.OutputPath, markdown);
    return 0;
}

static void WriteReport(string? path, string markdown)
{
    if (path is null) return;
    var full = Path.GetFullPath(path);
    Directory.CreateDirectory(Path.GetDirectoryName(full)!);
    File.WriteAllText(full, markdown);
    Console.WriteLine($"report written to {full}");
}
