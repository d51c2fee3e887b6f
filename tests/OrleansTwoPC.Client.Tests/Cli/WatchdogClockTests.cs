using CsCheck;
using OrleansTwoPC.Silo.Hosting;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// The watchdog's clock: its first reading is 0 (so the watchdog's unset timestamps mean "just started"),
/// and every later reading keeps its real distance from the others (so real stalls keep their length).
/// </summary>
public sealed class WatchdogClockTests
{
    [Fact]
    public void Readings_count_from_the_first_and_keep_their_distances()
    {
        Gen.Select(Gen.Long[0, long.MaxValue / 4], Gen.Long[0, 1_000_000_000].List[1, 20]).Sample(t =>
        {
            var (start, steps) = t;
            var inner = new SteppingClock(start);
            var clock = new ClockFromFirstReading(inner);

            Assert.Equal(0, clock.GetTimestamp());
            var previous = 0L;
            foreach (var step in steps)
            {
                inner.Now += step;
                var reading = clock.GetTimestamp();
                Assert.Equal(step, reading - previous);
                Assert.Equal(inner.Now - start, reading);
                previous = reading;
            }

            Assert.Equal(inner.TimestampFrequency, clock.TimestampFrequency);
            Assert.Equal(inner.GetUtcNow(), clock.GetUtcNow());
        });
    }

    [Fact]
    public void An_unset_timestamp_is_measured_from_the_first_reading_not_from_the_machine_start()
    {
        // The inner clock has run for days (a machine's uptime); the watchdog measures from its own start.
        var inner = new SteppingClock(TimeSpan.FromDays(3).Ticks);
        var clock = new ClockFromFirstReading(inner);
        clock.GetTimestamp();
        inner.Now += TimeSpan.FromMilliseconds(5).Ticks;

        Assert.Equal(TimeSpan.FromMilliseconds(5), clock.GetElapsedTime(0));
        Assert.Equal(TimeSpan.FromDays(3) + TimeSpan.FromMilliseconds(5), inner.GetElapsedTime(0));
    }

    private sealed class SteppingClock(long start) : TimeProvider
    {
        public long Now { get; set; } = start;

        public override long TimestampFrequency => TimeSpan.TicksPerSecond;

        public override long GetTimestamp() => Now;

        public override DateTimeOffset GetUtcNow() => new(2026, 11, 30, 0, 0, 0, TimeSpan.Zero);
    }
}
