using System.Globalization;

namespace OrleansTwoPC.Benchmark.Measurement;

/// <summary>
/// CPU time of single processes from <c>/proc/&lt;pid&gt;/stat</c>, so each system is charged for its own
/// processes (the benchmark process, which hosts the silos and the load generator, and PostgreSQL) and not
/// for whatever else runs on the machine.
/// </summary>
public static class ProcessCpu
{
    public static bool IsAvailable => File.Exists("/proc/self/stat");

    /// <summary>User plus system seconds of <paramref name="pid"/>; with <paramref name="reapedChildren"/>, also of
    /// its children that have exited and been waited for (cutime, cstime). Null when the process is gone.</summary>
    public static double? Seconds(int pid, bool reapedChildren = false)
    {
        var fields = ReadStat(pid);
        if (fields is null) return null;
        // After the command name: field 14 utime, 15 stime, 16 cutime, 17 cstime (1-based, proc(5)).
        var ticks = Field(fields, 14) + Field(fields, 15) + (reapedChildren ? Field(fields, 16) + Field(fields, 17) : 0);
        return ticks / MachineCpu.TicksPerSecond;
    }

    /// <summary>Processes whose parent is <paramref name="pid"/>.</summary>
    public static IReadOnlyList<int> ChildrenOf(int pid)
    {
        var children = new List<int>();
        foreach (var directory in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(directory), NumberStyles.None, CultureInfo.InvariantCulture, out var candidate)) continue;
            var fields = ReadStat(candidate);
            if (fields is not null && Field(fields, 4) == pid) children.Add(candidate);
        }
        return children;
    }

    /// <summary>
    /// A PostgreSQL server's CPU: the postmaster with every backend and auxiliary process it ever started
    /// (live children read one by one; exited ones are in the postmaster's reaped-children times).
    /// </summary>
    public static double? PostgresSeconds(int postmasterPid)
    {
        if (Seconds(postmasterPid, reapedChildren: true) is not { } total) return null;
        foreach (var child in ChildrenOf(postmasterPid)) total += Seconds(child) ?? 0;
        return total;
    }

    /// <summary>The 1-, 5- and 15-minute load averages from /proc/loadavg.</summary>
    public static (double One, double Five, double Fifteen)? LoadAverage()
    {
        try
        {
            var parts = File.ReadAllText("/proc/loadavg").Split(' ');
            return (double.Parse(parts[0], CultureInfo.InvariantCulture), double.Parse(parts[1], CultureInfo.InvariantCulture),
                double.Parse(parts[2], CultureInfo.InvariantCulture));
        }
        catch (IOException)
        {
            return null;
        }
    }

    // Fields after "pid (comm)"; comm may hold spaces and parentheses, so split after its last ')'.
    private static string[]? ReadStat(int pid)
    {
        string text;
        try
        {
            text = File.ReadAllText($"/proc/{pid}/stat");
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
        var end = text.LastIndexOf(')');
        return end < 0 ? null : text[(end + 2)..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
    }

    // proc(5) numbers fields from 1 with pid and comm as 1 and 2; the array starts at field 3.
    private static long Field(string[] fields, int number) =>
        number - 3 < fields.Length ? long.Parse(fields[number - 3], CultureInfo.InvariantCulture) : 0;
}
