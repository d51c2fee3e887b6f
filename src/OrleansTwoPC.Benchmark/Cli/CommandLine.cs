using System.Globalization;
using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark.Cli;

/// <summary>A bad command line: the message is the one line printed before exiting with code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

/// <summary>
/// Parses <c>--name value</c> / <c>--name=value</c> options. Anything shaped <c>--Section:Key=Value</c>
/// is configuration (e.g. <c>--ConnectionStrings:PostgresServer=...</c>, <c>--TwoPC:Protocol:PrepareTimeout=...</c>).
/// </summary>
public static class CommandLine
{
    public const string Usage = """
        usage: OrleansTwoPC.Benchmark [options] [--Section:Key=Value ...]

          --mode full|short|memory   full: every cell, 3 rounds (default; Release build required)
                                     short: all systems, small load, 1 round (about a minute)
                                     memory: idle-activation memory of system A only
          --workloads LIST           uniform,hot,abort-heavy
          --concurrency LIST         closed-loop callers per run, e.g. 1,8,32,128
          --duration SECONDS         measured time per run (full: 8)
          --warmup SECONDS           unmeasured load before each run (full: 2)
          --rounds N                 repetitions of every cell, systems alternating (full: 3)
          --systems LIST             A,A-adonet,B,C (A-adonet: A on Orleans' ADO.NET grain storage)
          --skus N / --accounts N    catalogue size (full: 10000 each)
          --memory-activations N     idle participant activations of the memory measurement (0 skips it)
          --seed N                   order stream seed
          --output PATH              markdown report file (full: docs/benchmarks.md); "-" for stdout only

          --ConnectionStrings:PostgresServer=CS   use this server instead of starting an embedded one
          --TwoPC:...=VALUE                       settings of system A, as for the silo

        exit codes: 0 ok, 1 conservation violation or failure, 2 bad command line
        """;

    public static BenchmarkOptions Parse(IReadOnlyList<string> args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var configuration = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        var emitJson = false;
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
                throw new UsageException($"unexpected argument '{arg}' (options start with --; see --help)");
            var body = arg[2..];
            string name;
            string? value = null;
            var equals = body.IndexOf('=');
            if (equals >= 0)
            {
                name = body[..equals];
                value = body[(equals + 1)..];
            }
            else name = body;

            if (name.Contains(':'))
            {
                // Configuration passes through untouched; "--Key Value" is accepted like "--Key=Value".
                if (value is null)
                {
                    if (i + 1 >= args.Count) throw new UsageException($"--{name} needs a value");
                    value = args[++i];
                }
                configuration[name] = value;
                continue;
            }
            if (name == "emit-memory-json")
            {
                emitJson = true;
                continue;
            }
            if (!KnownOptions.Contains(name)) throw new UsageException($"unknown option '--{name}' (see --help)");
            if (value is null)
            {
                if (i + 1 >= args.Count || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    throw new UsageException($"--{name} needs a value");
                value = args[++i];
            }
            if (values.ContainsKey(name)) throw new UsageException($"--{name} is given twice");
            values[name] = value;
        }

        var mode = values.TryGetValue("mode", out var modeText) ? ParseMode(modeText) : BenchmarkMode.Full;
        var options = BenchmarkOptions.ForMode(mode) with { RawArguments = args.ToList(), Configuration = configuration, EmitMemoryJson = emitJson };
        foreach (var (name, value) in values)
        {
            options = name switch
            {
                "mode" => options,
                "workloads" => options with { Workloads = ParseList(name, value, ParseWorkload) },
                "concurrency" => options with { Concurrency = ParseList(name, value, v => ParseInt(name, v, 1, 4096)) },
                "duration" => options with { Duration = ParseSeconds(name, value) },
                "warmup" => options with { WarmUp = ParseSeconds(name, value, allowZero: true) },
                "rounds" => options with { Rounds = ParseInt(name, value, 1, 100) },
                "systems" => options with { Systems = ParseList(name, value, ParseSystem) },
                "skus" => options with { SkuCount = ParseInt(name, value, 1, 10_000_000) },
                "accounts" => options with { AccountCount = ParseInt(name, value, 1, 10_000_000) },
                "memory-activations" => options with { MemoryActivations = ParseInt(name, value, 0, 10_000_000) },
                "seed" => options with { Seed = ParseInt(name, value, int.MinValue, int.MaxValue) },
                "output" => options with { OutputPath = value == "-" ? null : value },
                _ => throw new UsageException($"unknown option '--{name}'"),
            };
        }
        return options;
    }

    private static readonly HashSet<string> KnownOptions =
    [
        "mode", "workloads", "concurrency", "duration", "warmup", "rounds", "systems", "skus", "accounts",
        "memory-activations", "seed", "output",
    ];

    private static BenchmarkMode ParseMode(string value) => value.ToLowerInvariant() switch
    {
        "full" => BenchmarkMode.Full,
        "short" => BenchmarkMode.Short,
        "memory" => BenchmarkMode.Memory,
        _ => throw new UsageException($"--mode must be full, short or memory, not '{value}'"),
    };

    private static WorkloadKind ParseWorkload(string value) =>
        WorkloadNames.TryParse(value, out var kind)
            ? kind
            : throw new UsageException($"unknown workload '{value}' (expected uniform, hot or abort-heavy)");

    private static string ParseSystem(string value) =>
        value.ToUpperInvariant() is "A" or "B" or "C" ? value.ToUpperInvariant()
        : string.Equals(value, Systems.A.TwoPhaseCommitSystem.AdoNetId, StringComparison.OrdinalIgnoreCase) ? Systems.A.TwoPhaseCommitSystem.AdoNetId
        : throw new UsageException($"unknown system '{value}' (expected A, A-adonet, B or C)");

    private static IReadOnlyList<T> ParseList<T>(string name, string value, Func<string, T> parse)
    {
        var items = value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (items.Length == 0) throw new UsageException($"--{name} needs at least one value");
        var parsed = items.Select(parse).ToList();
        if (parsed.Distinct().Count() != parsed.Count) throw new UsageException($"--{name} lists a value twice");
        return parsed;
    }

    private static int ParseInt(string name, string value, int min, int max)
    {
        if (!int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var number) || number < min || number > max)
            throw new UsageException($"--{name} must be a whole number from {min} to {max}, not '{value}'");
        return number;
    }

    private static TimeSpan ParseSeconds(string name, string value, bool allowZero = false)
    {
        var text = value.EndsWith('s') ? value[..^1] : value;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds)
            || double.IsNaN(seconds) || seconds < 0 || (!allowZero && seconds == 0) || seconds > 3600)
            throw new UsageException($"--{name} must be a number of seconds{(allowZero ? "" : " above 0")} up to 3600, not '{value}'");
        return TimeSpan.FromSeconds(seconds);
    }
}
