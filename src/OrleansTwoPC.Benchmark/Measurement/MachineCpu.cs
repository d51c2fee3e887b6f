using System.Globalization;
using System.Runtime.InteropServices;

namespace OrleansTwoPC.Benchmark.Measurement;

/// <summary>
/// Busy CPU time of the whole machine from /proc/stat: PostgreSQL, the silos and the load generator all
/// run here, so only the machine-wide figure charges each system for everything it makes the machine do.
/// </summary>
public static class MachineCpu
{
    private const int ScClockTicks = 2; // _SC_CLK_TCK on Linux

    internal static readonly double TicksPerSecond = ReadTicksPerSecond();

    /// <summary>Busy seconds since boot: user + nice + system + irq + softirq + steal (idle and iowait excluded).</summary>
    public static double BusySeconds()
    {
        var line = File.ReadLines("/proc/stat").First(l => l.StartsWith("cpu ", StringComparison.Ordinal));
        var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(f => long.Parse(f, CultureInfo.InvariantCulture)).ToArray();
        // Fields: user nice system idle iowait irq softirq steal guest guest_nice (guest is already in user).
        long Field(int i) => i < fields.Length ? fields[i] : 0;
        var busy = Field(0) + Field(1) + Field(2) + Field(5) + Field(6) + Field(7);
        return busy / TicksPerSecond;
    }

    public static bool IsAvailable => File.Exists("/proc/stat");

    private static double ReadTicksPerSecond()
    {
        try
        {
            var ticks = SystemConfiguration(ScClockTicks);
            return ticks > 0 ? ticks : 100;
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            return 100;
        }
    }

    [DllImport("libc", EntryPoint = "sysconf")]
    private static extern long SystemConfiguration(int name);
}
