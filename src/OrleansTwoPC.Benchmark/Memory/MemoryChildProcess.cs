using System.Diagnostics;
using System.Reflection;
using System.Text.Json;

namespace OrleansTwoPC.Benchmark.Memory;

/// <summary>
/// Runs the memory measurement in a fresh process of this same executable, against the same PostgreSQL
/// server: the benchmark process carries two silos and many finished orders, which would blur the heap.
/// </summary>
public static class MemoryChildProcess
{
    public const string ResultMarker = "MEMORY-RESULT ";

    public static async Task<MemoryResult> RunAsync(string serverConnectionString, int activations, IReadOnlyDictionary<string, string?> configuration, CancellationToken cancellationToken)
    {
        var startInfo = StartInfoForThisProgram();
        foreach (var argument in new[] { "--mode", "memory", "--memory-activations", activations.ToString(System.Globalization.CultureInfo.InvariantCulture), "--output", "-", "--emit-memory-json" })
            startInfo.ArgumentList.Add(argument);
        // Product settings travel with the child; the connection string goes by environment, not on a command line.
        foreach (var (key, value) in configuration.Where(c => !c.Key.StartsWith("ConnectionStrings:", StringComparison.OrdinalIgnoreCase)))
            startInfo.ArgumentList.Add($"--{key}={value}");
        startInfo.Environment["ConnectionStrings__PostgresServer"] = serverConnectionString;
        startInfo.RedirectStandardOutput = true;
        startInfo.UseShellExecute = false;

        using var child = Process.Start(startInfo) ?? throw new InvalidOperationException("could not start the memory measurement process");
        MemoryResult? result = null;
        try
        {
            while (await child.StandardOutput.ReadLineAsync(cancellationToken) is { } line)
            {
                if (line.StartsWith(ResultMarker, StringComparison.Ordinal))
                    result = JsonSerializer.Deserialize<MemoryResult>(line[ResultMarker.Length..]);
                else if (line.Length > 0)
                    Console.WriteLine(line);
            }
            await child.WaitForExitAsync(cancellationToken);
        }
        finally
        {
            if (!child.HasExited) child.Kill(entireProcessTree: true);
        }
        if (child.ExitCode != 0 || result is null)
            throw new InvalidOperationException($"the memory measurement process failed (exit code {child.ExitCode})");
        return result;
    }

    /// <summary>The apphost when there is one, otherwise <c>dotnet OrleansTwoPC.Benchmark.dll</c>.</summary>
    private static ProcessStartInfo StartInfoForThisProgram()
    {
        var processPath = Environment.ProcessPath ?? throw new InvalidOperationException("the path of this program is unknown");
        if (!string.Equals(Path.GetFileNameWithoutExtension(processPath), "dotnet", StringComparison.OrdinalIgnoreCase))
            return new ProcessStartInfo(processPath);
        var startInfo = new ProcessStartInfo(processPath);
        startInfo.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        return startInfo;
    }
}
