using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using OrleansTwoPC.Client.Tests.Infrastructure;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// Orleans' watchdog in a real silo process: no false "participant check thread has not completed for
/// (the machine's uptime)" at start, while a real stall is still reported with its real length. The silo
/// runs on one CPU, where the watchdog's start-up race (its check thread running before its start time is
/// set) happens on practically every start.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed partial class SiloWatchdogTests(PostgresFixture postgres, ITestOutputHelper log)
{
    [Fact]
    public async Task A_silo_start_on_one_cpu_logs_no_false_watchdog_stall()
    {
        for (var start = 0; start < 2; start++)
        {
            await using var silo = await StartOnOneCpuAsync("watchdog", new Dictionary<string, string>());
            // The watchdog checks every second from its start (before Active); give it a few more.
            await Task.Delay(TimeSpan.FromSeconds(3));
            log.WriteLine(silo.Output);

            Assert.DoesNotContain("Participant check thread has not completed", silo.Output);
            Assert.False(silo.HasExited, silo.Output);
        }
    }

    [Fact]
    public async Task A_real_stall_is_still_reported_with_its_length()
    {
        await using var silo = await StartOnOneCpuAsync("stall", new Dictionary<string, string>());

        Signals.Send(silo.Pid, Signals.SIGSTOP);
        await Task.Delay(TimeSpan.FromSeconds(5));
        Signals.Send(silo.Pid, Signals.SIGCONT);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        Match stall;
        while (!(stall = PlatformStall().Match(silo.Output)).Success && DateTime.UtcNow < deadline)
        {
            await Task.Delay(200);
        }

        log.WriteLine(silo.Output);
        Assert.True(stall.Success, "no stall reported after a 5 s SIGSTOP:\n" + silo.Output);
        var length = TimeSpan.Parse(stall.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(length, TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(30));
    }

    /// <summary>Starts a silo process confined to one CPU: a child inherits the CPU affinity of the thread that forks it.</summary>
    private async Task<SiloServer> StartOnOneCpuAsync(string name, Dictionary<string, string> overrides)
    {
        Task<SiloServer>? start = null;
        Exception? failure = null;
        var thread = new Thread(() =>
        {
            try
            {
                PinCurrentThreadToOneCpu();
                start = SiloServer.StartAsync(postgres.AdminConnectionString, name, TimeSpan.FromSeconds(90), overrides);
            }
            catch (Exception ex)
            {
                failure = ex;
            }
        });
        thread.Start();
        thread.Join();
        if (failure is not null) throw failure;
        return await start!;
    }

    private static void PinCurrentThreadToOneCpu()
    {
        if (SchedGetAffinity(0, sizeof(ulong), out var allowed) != 0 || allowed == 0)
        {
            throw new InvalidOperationException($"sched_getaffinity failed: errno {Marshal.GetLastPInvokeError()}");
        }

        var one = allowed & (~allowed + 1); // the lowest allowed CPU
        if (SchedSetAffinity(0, sizeof(ulong), ref one) != 0)
        {
            throw new InvalidOperationException($"sched_setaffinity failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [DllImport("libc", EntryPoint = "sched_getaffinity", SetLastError = true)]
    private static extern int SchedGetAffinity(int pid, nint size, out ulong mask);

    [DllImport("libc", EntryPoint = "sched_setaffinity", SetLastError = true)]
    private static extern int SchedSetAffinity(int pid, nint size, ref ulong mask);

    [GeneratedRegex(@"\.NET Runtime Platform stalled for (\d\d:\d\d:\d\d(?:\.\d+)?)")]
    private static partial Regex PlatformStall();
}
