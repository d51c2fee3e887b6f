using Microsoft.Extensions.DependencyInjection;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// Removes a false alarm of Orleans' silo watchdog at its cause. <c>Watchdog.Start</c> (Orleans 10.x) starts
/// its platform thread before it records when the component checks began; when that thread runs its first
/// check first (a busy machine, or a single CPU), it measures from the unset timestamp 0, i.e. from the
/// machine's boot, and warns <c>Participant check thread has not completed for</c> the machine's uptime on
/// every silo start, recording a health event that also lowers the silo's local health score. The
/// watchdog's clock here counts from its first reading, which <c>Start</c> takes before starting the thread,
/// so an unset timestamp means "just started". Real stalls are still measured and reported: only the origin
/// of the timestamps moves, never their differences.
/// </summary>
public static class WatchdogClock
{
    /// <summary>The watchdog resolved with <see cref="ClockFromFirstReading"/> over the membership clock it would get.</summary>
    public static ISiloBuilder UseWatchdogClockFromFirstReading(this ISiloBuilder silo)
    {
        // Internal to Orleans: resolved by name, so an Orleans that renames it fails the silo start loudly.
        var watchdog = typeof(Orleans.Runtime.Silo).Assembly.GetType("Orleans.Runtime.Watchdog", throwOnError: true)!;
        silo.Services.AddSingleton(watchdog, sp => ActivatorUtilities.CreateInstance(sp, watchdog,
            new ClockFromFirstReading(sp.GetRequiredKeyedService<TimeProvider>(Orleans.Runtime.TimeProviderNames.Membership))));
        return silo;
    }
}

/// <summary>A clock whose timestamps count from its first <see cref="GetTimestamp"/> (which returns 0); all else as <paramref name="inner"/>.</summary>
public sealed class ClockFromFirstReading(TimeProvider inner) : TimeProvider
{
    private const long Unset = long.MinValue;
    private long _origin = Unset;

    public override long TimestampFrequency => inner.TimestampFrequency;

    public override TimeZoneInfo LocalTimeZone => inner.LocalTimeZone;

    public override long GetTimestamp()
    {
        var now = inner.GetTimestamp();
        var origin = Interlocked.CompareExchange(ref _origin, now, Unset);
        return now - (origin == Unset ? now : origin);
    }

    public override DateTimeOffset GetUtcNow() => inner.GetUtcNow();

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) =>
        inner.CreateTimer(callback, state, dueTime, period);
}
