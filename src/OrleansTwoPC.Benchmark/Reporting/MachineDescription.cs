using System.Globalization;
using System.Reflection;
using System.Runtime;
using System.Runtime.InteropServices;
using OrleansTwoPC.Benchmark.Infrastructure;

namespace OrleansTwoPC.Benchmark.Reporting;

/// <summary>The machine, read from the machine itself at run time.</summary>
public sealed record MachineDescription(
    int Cores,
    string CpuModel,
    string Memory,
    string OperatingSystem,
    string PostgresVersion,
    IReadOnlyList<(string Name, string Value)> PostgresSettings,
    string PostgresSource,
    string DotNet,
    string OrleansVersion,
    string Build,
    string GarbageCollector,
    string LoadAverageAtStart)
{
    public static readonly string[] ReportedPostgresSettings =
        ["fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "shared_buffers", "max_connections"];

    public static async Task<MachineDescription> ReadAsync(BenchmarkPostgres postgres, CancellationToken cancellationToken) => new(
        Environment.ProcessorCount,
        ReadCpuModel(),
        ReadTotalMemory(),
        ReadOperatingSystem(),
        await postgres.ServerVersionAsync(cancellationToken),
        await postgres.SettingsAsync(ReportedPostgresSettings, cancellationToken),
        postgres.Embedded is null ? "existing server (ConnectionStrings:PostgresServer)" : "embedded, started by the benchmark (product's EmbeddedPostgres, defaults)",
        RuntimeInformation.FrameworkDescription,
        ReadOrleansVersion(),
        BuildConfiguration(),
        GCSettings.IsServerGC ? "server GC" : "workstation GC",
        ReadLoadAverage());

    public static string BuildConfiguration() =>
        typeof(MachineDescription).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "unknown";

    /// <summary>"10.4.2" out of an informational version such as "10.4.2. Commit Hash: ...".</summary>
    private static string ReadOrleansVersion()
    {
        var informational = typeof(Orleans.Runtime.GrainId).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "";
        var match = System.Text.RegularExpressions.Regex.Match(informational, @"^\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?");
        return match.Success ? match.Value.TrimEnd('.') : "unknown";
    }

    private static string ReadLoadAverage()
    {
        try
        {
            return string.Join(", ", File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    private static string ReadCpuModel()
    {
        try
        {
            var line = File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal));
            return line?.Split(':', 2)[1].Trim() ?? RuntimeInformation.ProcessArchitecture.ToString();
        }
        catch (IOException)
        {
            return RuntimeInformation.ProcessArchitecture.ToString();
        }
    }

    private static string ReadTotalMemory()
    {
        try
        {
            var line = File.ReadLines("/proc/meminfo").First(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
            var kib = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture);
            return $"{kib / 1024.0 / 1024.0:0.0} GiB";
        }
        catch (Exception ex) when (ex is IOException or InvalidOperationException or FormatException)
        {
            return $"{GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 1024.0 / 1024 / 1024:0.0} GiB available to .NET";
        }
    }

    private static string ReadOperatingSystem()
    {
        var pretty = File.Exists("/etc/os-release")
            ? File.ReadLines("/etc/os-release").FirstOrDefault(l => l.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))?.Split('=', 2)[1].Trim('"')
            : null;
        var kernel = File.Exists("/proc/sys/kernel/osrelease") ? "Linux " + File.ReadAllText("/proc/sys/kernel/osrelease").Trim() : RuntimeInformation.OSDescription;
        return pretty is null ? kernel : $"{pretty}, {kernel}";
    }
}
