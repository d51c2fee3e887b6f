using OrleansTwoPC.Silo.Demo;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Processes;

/// <summary>
/// A bad log level is read before the silo has a logger: the silo executable must still stop with one
/// <c>error:</c> line and exit code 1, not an unhandled exception's stack trace.
/// </summary>
[Collection(SiloProcessCollection.Name)]
public sealed class LoggingSettingsProcessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan ExitBound = TimeSpan.FromSeconds(90);

    [Theory]
    [InlineData("TwoPC:Logging:ConsoleLevel", null)]
    [InlineData("TwoPC:Logging:OrleansLevel", null)]
    // A number parses as an enum value but is no level.
    [InlineData("TwoPC:Logging:ConsoleLevel", "7")]
    public async Task A_bad_log_level_stops_the_silo_with_one_error_line(string key, string? setting)
    {
        var run = Guid.NewGuid().ToString("N")[..12];
        var level = setting ?? $"loud-{run}";
        // Refused before PostgreSQL is touched: this server address is never connected to.
        await using var silo = ChildSilo.Start($"silo-badlevel-{run}", "Host=127.0.0.1;Port=1;Username=nobody;Password=unused", $"p_{run}",
            $"proc-{run}", ProcessClusterSettings.ServiceId, "Host=127.0.0.1;Port=1;Database=unused", new Dictionary<string, string>
            {
                [key] = level,
            });
        using var timeout = new CancellationTokenSource(ExitBound);
        await silo.WaitForExitAsync(timeout.Token);
        var lines = silo.LastLines(200);
        output.WriteLine(string.Join(Environment.NewLine, lines));

        Assert.Equal(1, silo.ExitCode);
        var printed = lines.Where(l => !l.StartsWith("[parent ", StringComparison.Ordinal)).ToList();
        Assert.Equal(
            [$"[stderr] error: {key} must be a log level (Verbose, Debug, Information, Warning, Error, Fatal), not '{level}'"],
            printed);
    }
}
