using System.Diagnostics;
using System.Reflection;

namespace OrleansTwoPC.Client.Tests.Infrastructure;

/// <summary>What one run of the tpc executable did.</summary>
public sealed record TpcResult(int ExitCode, string Out, string Error, TimeSpan Elapsed)
{
    /// <summary>The non-empty lines written to stderr.</summary>
    public IReadOnlyList<string> ErrorLines => Error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    public override string ToString() => $"exit {ExitCode} after {Elapsed.TotalSeconds:0.0} s\n--- stdout\n{Out}\n--- stderr\n{Error}";
}

/// <summary>
/// Runs the real, built <c>tpc</c> (<c>dotnet tpc.dll ...</c>) from the client project's own output folder,
/// with no connection settings inherited from the environment.
/// </summary>
public static class Tpc
{
    private static readonly Lazy<string> Dll = new(FindDll);

    /// <summary>The built tpc.dll (also loaded by <see cref="TpcLibrary"/> to call its parsers directly).</summary>
    public static string DllPath => Dll.Value;

    public static async Task<TpcResult> RunAsync(params string[] arguments)
    {
        var startInfo = StartInfo(arguments);
        var stopwatch = Stopwatch.StartNew();
        using var process = Process.Start(startInfo) ?? throw new InvalidOperationException("could not start tpc");
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"tpc {string.Join(' ', arguments)} did not exit within 60 s");
        }

        return new TpcResult(process.ExitCode, (await output).Replace("\r", ""), (await error).Replace("\r", ""), stopwatch.Elapsed);
    }

    /// <summary>How <see cref="RunAsync"/> starts tpc (the process is tpc itself, no wrapper), for tests that
    /// drive a running tpc, e.g. signal it.</summary>
    public static ProcessStartInfo StartInfo(params string[] arguments)
    {
        var startInfo = new ProcessStartInfo(DotnetHost())
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = Path.GetTempPath(),
        };
        startInfo.ArgumentList.Add(Dll.Value);
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        // Only what the test passes may configure the client.
        foreach (var key in startInfo.Environment.Keys.ToList())
        {
            if (key.StartsWith("ConnectionStrings__", StringComparison.OrdinalIgnoreCase)
                || key.StartsWith("TwoPC__", StringComparison.OrdinalIgnoreCase))
            {
                startInfo.Environment.Remove(key);
            }
        }

        return startInfo;
    }

    private static string DotnetHost()
    {
        var host = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(host) && File.Exists(host))
        {
            return host;
        }

        var current = Environment.ProcessPath;
        return current is not null && Path.GetFileNameWithoutExtension(current) == "dotnet" ? current : "dotnet";
    }

    private static string FindDll()
    {
        var configuration = typeof(Tpc).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "OrleansTwoPC.sln")))
            {
                var dll = Path.Combine(directory.FullName, "src", "OrleansTwoPC.Client", "bin", configuration, "net10.0", "tpc.dll");
                return File.Exists(dll) ? dll : throw new FileNotFoundException($"tpc is not built ({dll}); build the solution first", dll);
            }
        }

        throw new DirectoryNotFoundException($"no OrleansTwoPC.sln above {AppContext.BaseDirectory}");
    }
}
