using System.Diagnostics;
using System.Reflection;
using System.Text;

namespace OrleansTwoPC.Benchmark.Tests;

/// <summary>What one run of the benchmark executable printed and returned.</summary>
public sealed record BenchmarkRun(int ExitCode, string Output, string Errors, TimeSpan Elapsed);

/// <summary>
/// Runs the built benchmark (<c>dotnet OrleansTwoPC.Benchmark.dll ...</c>) from the benchmark project's own
/// output folder, in the configuration the tests were built in, exactly as a person would run it.
/// </summary>
public static class BenchmarkProgram
{
    public static async Task<BenchmarkRun> RunAsync(TimeSpan timeout, params string[] arguments)
    {
        var startInfo = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        startInfo.ArgumentList.Add(LocateDll());
        foreach (var argument in arguments) startInfo.ArgumentList.Add(argument);
        // The benchmark must start its own throwaway PostgreSQL, whatever this shell has configured.
        startInfo.Environment.Remove("ConnectionStrings__PostgresServer");

        var clock = Stopwatch.StartNew();
        using var process = Process.Start(startInfo) ?? throw new InvalidOperationException("could not start the benchmark");
        var output = new StringBuilder();
        var errors = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (output) output.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (errors) errors.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"the benchmark did not finish within {timeout}; output so far:\n{output}\n{errors}");
        }
        process.WaitForExit(); // drains the redirected streams
        return new BenchmarkRun(process.ExitCode, output.ToString(), errors.ToString(), clock.Elapsed);
    }

    private static string LocateDll()
    {
        var configuration = typeof(BenchmarkProgram).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (!File.Exists(Path.Combine(directory.FullName, "OrleansTwoPC.sln"))) continue;
            var dll = Path.Combine(directory.FullName, "src", "OrleansTwoPC.Benchmark", "bin", configuration, "net10.0", "OrleansTwoPC.Benchmark.dll");
            return File.Exists(dll) ? dll : throw new FileNotFoundException($"the benchmark is not built at {dll}");
        }
        throw new DirectoryNotFoundException($"no OrleansTwoPC.sln above {AppContext.BaseDirectory}");
    }
}
