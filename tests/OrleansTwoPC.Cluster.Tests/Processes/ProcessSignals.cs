using System.Diagnostics;
using System.Globalization;

namespace OrleansTwoPC.Cluster.Tests.Processes;

/// <summary>Sends a POSIX signal to a process by PID (the <c>kill</c> command): TERM, STOP, CONT, ...</summary>
public static class ProcessSignals
{
    public static async Task SendAsync(int pid, string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", pid.ToString(CultureInfo.InvariantCulture)]);
        await kill.WaitForExitAsync();
    }
}
