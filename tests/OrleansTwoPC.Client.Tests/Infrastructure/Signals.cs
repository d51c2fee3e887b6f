using System.Runtime.InteropServices;

namespace OrleansTwoPC.Client.Tests.Infrastructure;

/// <summary>POSIX signals to real child processes, as a terminal or an init system sends them.</summary>
public static class Signals
{
    public const int SIGINT = 2;
    public const int SIGKILL = 9;
    public const int SIGTERM = 15;
    public const int SIGCONT = 18;
    public const int SIGSTOP = 19;

    /// <summary>Sends <paramref name="signal"/> to the process <paramref name="pid"/> (the real process, not a wrapper).</summary>
    public static void Send(int pid, int signal)
    {
        if (Kill(pid, signal) != 0)
        {
            throw new InvalidOperationException($"kill({pid}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    /// <summary>
    /// Children inherit an ignored SIGINT (a test runner started as a background job has one), and a .NET
    /// process then never sees Ctrl+C. A terminal's Ctrl+C reaches a process with the default disposition, so
    /// give the children that: reset SIGINT to the default in this process if it is ignored.
    /// </summary>
    public static void LetChildrenReceiveInterrupt()
    {
        var ignored = File.ReadLines("/proc/self/status").First(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        var mask = Convert.ToUInt64(ignored["SigIgn:".Length..].Trim(), 16);
        if ((mask & (1UL << (SIGINT - 1))) != 0)
        {
            SetDisposition(SIGINT, IntPtr.Zero); // SIG_DFL
        }
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    [DllImport("libc", EntryPoint = "signal")]
    private static extern IntPtr SetDisposition(int signal, IntPtr handler);
}
