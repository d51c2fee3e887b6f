using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace OrleansTwoPC.Storage;

/// <summary>Result of one finished external command.</summary>
internal sealed record ProcessResult(int ExitCode, string Output)
{
    public bool Succeeded => ExitCode == 0;
}

/// <summary>
/// Runs the PostgreSQL command-line tools. PostgreSQL refuses to run as root, so when this
/// process is root every command goes through <c>runuser -u postgres --</c>.
/// </summary>
internal static class ProcessRunner
{
    public const string ServiceUser = "postgres";

    [DllImport("libc", EntryPoint = "geteuid")]
    private static extern uint GetEffectiveUserId();

    /// <summary>True when the effective user is root (uid 0) on a Unix-like system.</summary>
    public static bool IsRoot { get; } = DetectRoot();

    private static bool DetectRoot()
    {
        if (OperatingSystem.IsWindows())
        {
            return false;
        }

        try
        {
            return GetEffectiveUserId() == 0;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            // No libc to ask: fall back to the name the runtime reports.
            return Environment.UserName == "root";
        }
    }

    /// <summary>Runs <paramref name="executable"/> as the PostgreSQL service user when needed.</summary>
    public static Task<ProcessResult> RunAsServiceUserAsync(
        string executable, IEnumerable<string> arguments, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (!IsRoot)
        {
            return RunAsync(executable, arguments, timeout, cancellationToken);
        }

        var wrapped = new List<string> { "-u", ServiceUser, "--", executable };
        wrapped.AddRange(arguments);
        return RunAsync(FindRunuser(), wrapped, timeout, cancellationToken);
    }

    /// <summary>Runs a command, capturing stdout and stderr together, killing it on timeout.</summary>
    public static async Task<ProcessResult> RunAsync(
        string executable, IEnumerable<string> arguments, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var startInfo = new ProcessStartInfo(executable)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = false,
            UseShellExecute = false,
            CreateNoWindow = true,
        };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        // The C locale keeps tool messages stable and avoids locale errors in minimal images.
        startInfo.Environment["LC_ALL"] = "C";
        startInfo.Environment["LANG"] = "C";

        var output = new StringBuilder();
        using var process = new Process { StartInfo = startInfo, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => Append(output, e.Data);
        process.ErrorDataReceived += (_, e) => Append(output, e.Data);

        if (!process.Start())
        {
            throw new InvalidOperationException($"Could not start '{executable}'.");
        }

        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        using var timeoutSource = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeoutSource.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(timeoutSource.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // Already exited.
            }

            if (cancellationToken.IsCancellationRequested)
            {
                throw;
            }

            throw new TimeoutException(
                $"'{executable} {string.Join(' ', startInfo.ArgumentList)}' did not finish within {timeout}. Output:\n{Snapshot(output)}");
        }

        return new ProcessResult(process.ExitCode, Snapshot(output));
    }

    /// <summary>Gives a file or directory tree to the service user (only needed as root).</summary>
    public static async Task GiveToServiceUserAsync(string path, CancellationToken cancellationToken)
    {
        if (!IsRoot)
        {
            return;
        }

        var result = await RunAsync("chown", ["-R", $"{ServiceUser}:", path], TimeSpan.FromSeconds(30), cancellationToken)
            .ConfigureAwait(false);
        if (!result.Succeeded)
        {
            throw new InvalidOperationException(
                $"chown of '{path}' to user '{ServiceUser}' failed (exit {result.ExitCode}). Does the '{ServiceUser}' user exist? {result.Output}");
        }
    }

    /// <summary>Full path of runuser (root's PATH normally has it, but do not rely on it).</summary>
    public static string RunuserPath => FindRunuser();

    private static string FindRunuser()
    {
        foreach (var candidate in new[] { "/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser", "/bin/runuser" })
        {
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        return "runuser";
    }

    private static void Append(StringBuilder output, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (output)
        {
            output.AppendLine(line);
        }
    }

    private static string Snapshot(StringBuilder output)
    {
        lock (output)
        {
            return output.ToString();
        }
    }
}
