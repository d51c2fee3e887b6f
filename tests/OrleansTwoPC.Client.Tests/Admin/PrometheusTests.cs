using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;
using Npgsql;
using OrleansTwoPC.Abstractions;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Admin;

/// <summary><c>TwoPC:Telemetry:Prometheus=true</c>: a <c>/metrics</c> scrape on the operator console's port.</summary>
[Collection(PostgresCollection.Name)]
public sealed class PrometheusTests(PostgresFixture postgres, ITestOutputHelper log)
{
    [Fact]
    public async Task A_scrape_shows_the_transaction_counters_and_what_is_in_doubt_now()
    {
        var port = ChildSilo.FreePort();
        await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "prom", TimeSpan.FromSeconds(90),
            new Dictionary<string, string>
            {
                ["TwoPC:Admin:Enabled"] = "true",
                ["TwoPC:Admin:Port"] = port.ToString(),
                ["TwoPC:Telemetry:Prometheus"] = "true",
                // The in-doubt transaction below stays so until the test recovers it.
                ["TwoPC:Protocol:InDoubtTimeout"] = "01:00:00",
                ["TwoPC:Recovery:SweepInterval"] = "01:00:00",
                // The start-up sweep's follow-up runs at once, long before the test makes anything in doubt.
                ["TwoPC:Recovery:CoordinatorGrace"] = "00:00:00",
            });
        using var http = new AdminHttp(port);
        try
        {
            await http.WaitUpAsync(TimeSpan.FromSeconds(30));
            await using var client = await LibraryClient.ConnectAsync(silo);
            var run = Guid.NewGuid().ToString("N")[..8];
            var sku = $"sku-{run}";
            var account = $"acct-{run}";
            await client.Grains.GetGrain<IInventoryGrain>(sku).SetStock(10);
            await client.Grains.GetGrain<IPaymentAccountGrain>(account).SetBalance(10_000);
            Task<OrderOutcome> Place(string id, int quantity) => client.Grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(id))
                .PlaceOrder(new OrderRequest(id, [new OrderLine(sku, quantity, 10)], account, "1 Main St"));
            for (var i = 0; i < 3; i++) Assert.Equal(OrderStatus.Committed, (await Place($"ok-{run}-{i}", 1)).Status);
            Assert.Equal(OrderStatus.Aborted, (await Place($"no-{run}", 100)).Status);

            // One transaction in doubt: the coordinator database refuses its decision write.
            var databases = PostgresTopology.DeriveDatabases(silo.AdminConnectionString, silo.Prefix);
            await Sql(databases.Coordinator, "CREATE FUNCTION refuse_decision() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'test: decision write refused'; END $$ LANGUAGE plpgsql; " +
                                             "CREATE TRIGGER refuse_decision BEFORE INSERT OR UPDATE ON twopc_grain_state FOR EACH ROW " +
                                             $"WHEN (NEW.state_name = '{OrleansTwoPC.Protocol.StateNames.Coordinator}') EXECUTE FUNCTION refuse_decision()");
            try
            {
                Assert.Equal(OrderStatus.InDoubt, (await Place($"doubt-{run}", 1)).Status);
            }
            finally
            {
                await Sql(databases.Coordinator, "DROP TRIGGER refuse_decision ON twopc_grain_state; DROP FUNCTION refuse_decision()");
            }

            var scrape = await ScrapeUntil(http, text => Value(text, "twopc_in_doubt_count") == 1 && Value(text, "twopc_transactions_total", "twopc_outcome=\"committed\"") == 3);
            // One counter with an outcome attribute; aborts also name their reason; durations in seconds.
            Assert.Equal(1, Value(scrape, "twopc_transactions_total", "twopc_abort_reason=\"insufficient_stock\""));
            Assert.Equal(1, Value(scrape, "twopc_transactions_total", "twopc_outcome=\"in_doubt\""));
            Assert.InRange(Value(scrape, "twopc_transaction_duration_seconds_sum") ?? -1, 0.0001, 30);
            Assert.Contains("# TYPE twopc_transaction_duration_seconds histogram", scrape);
            Assert.True(Value(scrape, "twopc_in_doubt_oldest_age_seconds") >= 0, scrape);
            Assert.Contains("# TYPE twopc_in_doubt_count gauge", scrape);
            log.WriteLine(string.Join('\n', scrape.Split('\n').Where(l => l.Contains("twopc_", StringComparison.Ordinal) && !l.Contains("_bucket", StringComparison.Ordinal))));

            // Recovered, the gauge goes back to zero at its next read.
            Assert.Equal(HttpStatusCode.OK, (await http.PostAsync($"/api/transactions/doubt-{run}/recover")).Status);
            await ScrapeUntil(http, text => Value(text, "twopc_in_doubt_count") == 0);
        }
        catch
        {
            log.WriteLine(silo.Output);
            throw;
        }
    }

    [Fact]
    public async Task Prometheus_without_the_console_is_refused_at_start()
    {
        var prefix = "m_" + Guid.NewGuid().ToString("N")[..12];
        await using var silo = ChildSilo.Start("refused", postgres.AdminConnectionString, prefix, "cluster-" + prefix, "OrleansTwoPC",
            PostgresTopology.DeriveDatabases(postgres.AdminConnectionString, prefix).Coordinator,
            new Dictionary<string, string> { ["TwoPC:Telemetry:Prometheus"] = "true" });
        await silo.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(60));
        await Task.Delay(200);
        Assert.Equal(1, silo.ExitCode);
        Assert.Contains(silo.LastLines(50), l => l.Contains("error: TwoPC:Telemetry:Prometheus=true serves /metrics on the operator console's port: set TwoPC:Admin:Enabled=true too", StringComparison.Ordinal));
    }

    private static async Task<string> ScrapeUntil(AdminHttp http, Func<string, bool> condition)
    {
        var text = "";
        for (var waited = Stopwatch.StartNew(); waited.Elapsed < TimeSpan.FromSeconds(40); await Task.Delay(500))
        {
            var reply = await http.GetAsync("/metrics");
            Assert.True(reply.Status == HttpStatusCode.OK, reply.ToString());
            text = reply.Text;
            if (condition(text)) return text;
        }

        Assert.Fail($"the scrape never showed what was expected:\n{text}");
        return text;
    }

    /// <summary>The value of a sample (first series whose labels contain <paramref name="label"/>), or null.</summary>
    private static double? Value(string scrape, string metric, string label = "")
    {
        foreach (Match m in Regex.Matches(scrape, $@"^{Regex.Escape(metric)}(\{{[^}}]*\}})? (\S+)", RegexOptions.Multiline))
            if (m.Groups[1].Value.Contains(label, StringComparison.Ordinal))
                return double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture);
        return null;
    }

    private static async Task Sql(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }
}
