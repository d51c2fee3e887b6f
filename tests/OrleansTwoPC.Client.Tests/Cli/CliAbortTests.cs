using System.Text.Json;
using OrleansTwoPC.Client.Tests.Infrastructure;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// <c>tpc abort</c> is a heuristic decision: it asks before it acts (or takes <c>--yes</c>), refuses with
/// one line when there is nobody to ask, and says when the id is unknown and what aborting it means.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class CliAbortTests(PostgresFixture postgres, ITestOutputHelper log)
{
    [Fact]
    public async Task Abort_asks_for_confirmation_refuses_without_a_terminal_and_says_an_unknown_id_is_used_up()
    {
        await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "abort", TimeSpan.FromSeconds(60));
        var run = Guid.NewGuid().ToString("N")[..8];
        var sku = $"sku-{run}";
        var account = $"acct-{run}";
        string[] Order(string id) => ["order", "--id", id, "--account", account, "--address", "1 Main St", "--line", $"{sku}:1:100", .. silo.TpcSettings];
        try
        {
            await Run(0, ["seed", "--sku", $"{sku}=10", "--account", $"{account}=10000", .. silo.TpcSettings]);

            // No --yes and no terminal (stdin is not one): refused with one line, nothing changes.
            var kept = $"kept-{run}";
            var refused = await Run(2, ["abort", kept, "--reason", "test", .. silo.TpcSettings]);
            CliUsageTests.AssertOneLineError(refused, 2, "--yes");
            Assert.Contains("nothing was changed", refused.Error);
            Assert.Contains($"tx-{kept} is unknown", refused.Out);
            Assert.Contains("can never be used for an order", refused.Out);
            await Run(1, ["tx", kept, .. silo.TpcSettings]);
            var placed = await Run(0, Order(kept));
            Assert.Contains("Committed", placed.Out);

            // With --yes an unknown id is aborted, and the output says the order id is now used up.
            var burned = $"burned-{run}";
            var aborted = await Run(0, ["abort", burned, "--reason", "test", "--yes", .. silo.TpcSettings]);
            Assert.Contains($"tx-{burned} is unknown", aborted.Out);
            Assert.Contains("now used up", aborted.Out);
            Assert.Equal("", aborted.Error);
            var refusedOrder = await Run(1, Order(burned));
            Assert.Contains(": Aborted", refusedOrder.Out);

            // A known, committed transaction: confirmed, then refused by the coordinator.
            var committed = await Run(1, ["abort", kept, "--reason", "test", "--yes", .. silo.TpcSettings]);
            Assert.Contains("forcing ABORT", committed.Out);
            Assert.Contains("refused", committed.Error);

            // --json: the report alone on stdout, the notice on stderr.
            var json = await Run(0, ["abort", $"json-{run}", "--reason", "test", "--yes", "--json", .. silo.TpcSettings]);
            using var report = JsonDocument.Parse(json.Out);
            Assert.Equal("Abort", report.RootElement.GetProperty("decision").GetString());
            Assert.Contains("is unknown", json.Error);
        }
        catch
        {
            log.WriteLine(silo.Output);
            throw;
        }
    }

    private async Task<TpcResult> Run(int exitCode, string[] arguments)
    {
        var result = await Tpc.RunAsync(arguments);
        log.WriteLine($"tpc {string.Join(' ', arguments.TakeWhile(a => !a.StartsWith("--ConnectionStrings", StringComparison.Ordinal)))}:{Environment.NewLine}{result}");
        Assert.True(result.ExitCode == exitCode, $"tpc {arguments[0]}: expected exit {exitCode}: {result}");
        return result;
    }
}
