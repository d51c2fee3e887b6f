using System.Text.Json;
using OrleansTwoPC.Client.Tests.Infrastructure;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary><c>tpc load</c>: its usage errors, and a run against a real silo process.</summary>
[Collection(PostgresCollection.Name)]
public sealed class CliLoadTests(PostgresFixture postgres, ITestOutputHelper log)
{
    [Theory]
    [InlineData("--orders: expected a whole number", "load", "--orders", "-5")]
    [InlineData("--concurrency: expected a whole number", "load", "--concurrency", "0")]
    [InlineData("--skus: expected a whole number", "load", "--skus", "many")]
    [InlineData("--accounts: expected a whole number", "load", "--accounts", "-1")]
    [InlineData("--abort-mix: expected a number from 0 to 1", "load", "--abort-mix", "1.5")]
    [InlineData("--abort-mix: expected a number from 0 to 1", "load", "--abort-mix", "-0.2")]
    [InlineData("--skew: expected a number", "load", "--skew", "-1")]
    [InlineData("--lines: expected a whole number from 1 to 8", "load", "--lines", "9")]
    [InlineData("--seed: expected a whole number", "load", "--seed", "x")]
    [InlineData("run id 'bad id'", "load", "--run-id", "bad id")]
    [InlineData("unknown option '--turbo'", "load", "--turbo")]
    public async Task Load_usage_errors_exit_2_with_one_line(string expected, params string[] arguments)
    {
        var result = await Tpc.RunAsync(arguments);

        CliUsageTests.AssertOneLineError(result, 2, expected);
        Assert.Equal("", result.Out);
    }

    [Fact]
    public async Task Load_against_a_real_silo_commits_and_aborts_and_leaves_the_databases_consistent()
    {
        await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "load", TimeSpan.FromSeconds(40));
        try
        {
            var load = await Tpc.RunAsync(
            [
                "load", "--orders", "200", "--concurrency", "16", "--abort-mix", "0.2", "--json", .. silo.TpcSettings,
            ]);
            log.WriteLine(load.ToString());
            Assert.True(load.ExitCode == 0, load + Environment.NewLine + silo.Output);

            using var summary = JsonDocument.Parse(load.Out);
            var root = summary.RootElement;
            int Int(string name) => root.GetProperty(name).GetInt32();
            Assert.Equal(200, Int("orders"));
            Assert.Equal(200, Int("committed") + Int("aborted"));
            Assert.Equal(0, Int("failures"));
            Assert.Equal(0, Int("inDoubt"));
            Assert.True(Int("aborted") > 0, load.Out);
            var reasons = root.GetProperty("abortedByReason").EnumerateObject().ToList();
            Assert.NotEmpty(reasons);
            Assert.All(reasons, r => Assert.StartsWith("insufficient", r.Name));
            Assert.Equal(Int("aborted"), reasons.Sum(r => r.Value.GetInt32()));
            var latency = root.GetProperty("latencyMs");
            Assert.True(latency.GetProperty("p50").GetDouble() <= latency.GetProperty("p99").GetDouble(), load.Out);
            Assert.True(root.GetProperty("ordersPerSecond").GetDouble() > 0, load.Out);

            var check = await Tpc.RunAsync(["check", "--wait", "20", .. silo.TpcSettings]);
            log.WriteLine(check.ToString());
            Assert.True(check.ExitCode == 0, check.ToString());
        }
        catch
        {
            log.WriteLine(silo.Output);
            throw;
        }
    }
}
