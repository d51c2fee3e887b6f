using System.Diagnostics;
using System.Text.Json;
using OrleansTwoPC.Client.Tests.Infrastructure;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// The connection need not be repeated on every call: tpc reads it from the environment or from a profile file
/// (<c>$TPC_PROFILE</c>, else <c>$XDG_CONFIG_HOME/tpc/appsettings.json</c>).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class CliProfileTests(PostgresFixture postgres, ITestOutputHelper log)
{
    [Fact]
    public async Task The_connection_comes_from_the_environment_or_a_profile_file()
    {
        var home = Directory.CreateTempSubdirectory("tpc-profile-");
        try
        {
            // Nothing configured: one line and exit 2.
            var none = await Run(new Dictionary<string, string> { ["XDG_CONFIG_HOME"] = home.FullName });
            CliUsageTests.AssertOneLineError(none, 2, "no database configured");

            // The environment.
            var environment = await Run(new Dictionary<string, string>
            {
                ["XDG_CONFIG_HOME"] = home.FullName,
                ["ConnectionStrings__PostgresServer"] = postgres.AdminConnectionString,
                ["TwoPC__DatabasePrefix"] = PostgresFixture.Prefix,
            });
            Assert.True(environment.ExitCode == 0, environment.ToString());

            // The default profile file.
            var settings = JsonSerializer.Serialize(new
            {
                ConnectionStrings = new { PostgresServer = postgres.AdminConnectionString },
                TwoPC = new { DatabasePrefix = PostgresFixture.Prefix },
            });
            Directory.CreateDirectory(Path.Combine(home.FullName, "tpc"));
            await File.WriteAllTextAsync(Path.Combine(home.FullName, "tpc", "appsettings.json"), settings);
            var profile = await Run(new Dictionary<string, string> { ["XDG_CONFIG_HOME"] = home.FullName });
            Assert.True(profile.ExitCode == 0, profile.ToString());
            Assert.Equal(environment.Out, profile.Out);

            // A profile named by TPC_PROFILE, which must exist.
            var named = Path.Combine(home.FullName, "staging.json");
            await File.WriteAllTextAsync(named, settings);
            var chosen = await Run(new Dictionary<string, string> { ["XDG_CONFIG_HOME"] = Path.Combine(home.FullName, "empty"), ["TPC_PROFILE"] = named });
            Assert.True(chosen.ExitCode == 0, chosen.ToString());
            var missing = await Run(new Dictionary<string, string> { ["TPC_PROFILE"] = named + ".typo" });
            CliUsageTests.AssertOneLineError(missing, 2, "TPC_PROFILE names");
        }
        finally
        {
            home.Delete(recursive: true);
        }
    }

    private async Task<TpcResult> Run(Dictionary<string, string> environment)
    {
        var start = Tpc.StartInfo("list", "--json", "--limit", "1");
        start.Environment.Remove("TPC_PROFILE");
        foreach (var (key, value) in environment) start.Environment[key] = value;
        var stopwatch = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        var result = new TpcResult(process.ExitCode, await output, await error, stopwatch.Elapsed);
        log.WriteLine($"{string.Join(' ', environment.Keys)}: {result}");
        return result;
    }
}
