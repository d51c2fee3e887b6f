using System.Text.Json;
using OrleansTwoPC.Client.Tests.Infrastructure;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// A cluster of two real silo processes with different service roles (one runs the coordinator,
/// inventory and shipping services, the other the payment service), driven only through the real tpc
/// executable: seed and load, SIGKILL the payment silo mid-load, see a payment-only outage, restart it,
/// recover, check.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class CliServiceRoleClusterTests(PostgresFixture postgres, ITestOutputHelper log)
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Killing_the_payment_silo_is_a_payment_outage_and_recovery_leaves_everything_consistent()
    {
        await using var orders = await SiloServer.StartAsync(postgres.AdminConnectionString, "orders", StartTimeout,
            new Dictionary<string, string> { ["TwoPC:Roles"] = "coordinator,inventory,shipping" });
        SiloServer? payments = await SiloServer.StartAsync(postgres.AdminConnectionString, "payments", StartTimeout,
            new Dictionary<string, string> { ["TwoPC:Roles"] = "payment" }, joining: orders);
        string[] cluster = [.. orders.TpcSettings, "--TwoPC:Client:ResponseTimeout=00:00:20"];
        try
        {
            // 1. Seed and load with both services up: everything commits or aborts cleanly.
            var first = await Tpc.RunAsync(["load", "--orders", "150", "--concurrency", "8", "--skus", "20", "--accounts", "20",
                "--abort-mix", "0.2", "--seed", "7", "--run-id", "before", "--json", .. cluster]);
            log.WriteLine(first.ToString());
            Assert.True(first.ExitCode == 0, first + Diagnostics(orders, payments));
            using (var summary = JsonDocument.Parse(first.Out))
            {
                Assert.Equal(150, summary.RootElement.GetProperty("committed").GetInt32() + summary.RootElement.GetProperty("aborted").GetInt32());
                Assert.True(summary.RootElement.GetProperty("committed").GetInt32() > 0, first.Out);
            }

            // 2. A second load; the payment silo is SIGKILLed while it runs.
            // Long enough (several seconds at a few hundred orders/s) to be still running when the payment silo dies.
            var during = Tpc.RunAsync(["load", "--orders", "3000", "--concurrency", "8", "--skus", "20", "--accounts", "20",
                "--no-seed", "--seed", "8", "--run-id", "during", "--json", .. cluster]);
            await Task.Delay(TimeSpan.FromSeconds(2));
            Assert.False(during.IsCompleted, "the load finished before the kill; it must be running when the payment silo dies");
            payments.Kill();
            log.WriteLine($"payment silo killed at {DateTime.UtcNow:HH:mm:ss.fff}");

            // 3. The outage is the payment service's alone: balances fail with one clear line, stock answers.
            var balanceDown = await WaitForAsync(async () =>
            {
                var r = await Tpc.RunAsync(["balance", "load-acct-0001", .. cluster]);
                return (r.ExitCode != 0 && r.Error.Contains("payment service is down"), r);
            }, TimeSpan.FromSeconds(40));
            log.WriteLine(balanceDown.ToString());
            Assert.Single(balanceDown.ErrorLines);
            var stock = await Tpc.RunAsync(["stock", "load-sku-0001", .. cluster]);
            log.WriteLine(stock.ToString());
            Assert.True(stock.ExitCode == 0, stock.ToString());
            Assert.Contains("load-sku-0001", stock.Out);

            var duringResult = await during;
            log.WriteLine(duringResult.ToString());
            using (var summary = JsonDocument.Parse(duringResult.Out))
            {
                var root = summary.RootElement;
                Assert.Equal(3000, root.GetProperty("orders").GetInt32());
                // Orders after the kill cannot charge anyone: they end unavailable, aborted or in doubt, never half done.
                Assert.True(root.GetProperty("committed").GetInt32() < 3000, duringResult.Out);
            }

            // 4. Orders placed while the payment service is down are refused as a whole.
            var refused = await Tpc.RunAsync(["order", "--id", "while-down", "--account", "load-acct-0001", "--address", "1 Main St",
                "--line", "load-sku-0001:1:10", .. cluster]);
            log.WriteLine(refused.ToString());
            Assert.Equal(1, refused.ExitCode);

            // 5. The payment silo comes back; recovery finishes whatever was left; the invariants hold.
            await payments.DisposeAsync();
            payments = await SiloServer.StartAsync(postgres.AdminConnectionString, "payments2", StartTimeout,
                new Dictionary<string, string> { ["TwoPC:Roles"] = "payment" }, joining: orders);
            var recovered = await WaitForAsync(async () =>
            {
                var r = await Tpc.RunAsync(["recover", "--all", .. cluster]);
                return (r.ExitCode == 0, r);
            }, TimeSpan.FromSeconds(60));
            log.WriteLine(recovered.ToString());
            var check = await Tpc.RunAsync(["check", "--wait", "45", .. cluster]);
            log.WriteLine(check.ToString());
            Assert.True(check.ExitCode == 0, check + Diagnostics(orders, payments));
            var inDoubt = await Tpc.RunAsync(["in-doubt", "--json", .. cluster]);
            log.WriteLine(inDoubt.ToString());
            Assert.Equal(0, inDoubt.ExitCode);
            Assert.Equal(0, JsonDocument.Parse(inDoubt.Out).RootElement.GetArrayLength());

            // 6. And the cluster takes orders again, all committing.
            var after = await Tpc.RunAsync(["load", "--orders", "60", "--concurrency", "8", "--skus", "20", "--accounts", "20",
                "--no-seed", "--seed", "9", "--run-id", "after", "--json", .. cluster]);
            log.WriteLine(after.ToString());
            Assert.True(after.ExitCode == 0, after + Diagnostics(orders, payments));
            Assert.Equal(60, JsonDocument.Parse(after.Out).RootElement.GetProperty("committed").GetInt32());
        }
        catch
        {
            log.WriteLine(Diagnostics(orders, payments));
            throw;
        }
        finally
        {
            await payments.DisposeAsync();
        }
    }

    private static string Diagnostics(SiloServer orders, SiloServer? payments) =>
        $"{Environment.NewLine}--- orders silo{Environment.NewLine}{orders.Output}{Environment.NewLine}--- payments silo{Environment.NewLine}{payments?.Output}";

    private static async Task<TpcResult> WaitForAsync(Func<Task<(bool Done, TpcResult Result)>> attempt, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var (done, result) = await attempt();
            if (done) return result;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"condition not reached within {timeout.TotalSeconds:0} s; last: {result}");
            await Task.Delay(500);
        }
    }
}
