using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Npgsql;
using OrleansTwoPC.Abstractions;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Admin;

/// <summary>
/// The HTTP admin API of a real silo process (<c>TwoPC:Admin:Enabled=true</c>), called with HttpClient: list with
/// filters and paging, a timeline, recover one and all, heuristic abort where allowed, and bad input refused with
/// a JSON error that changes nothing. <c>tpc list</c> answers the same query.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class AdminApiTests(PostgresFixture postgres, ITestOutputHelper log)
{
    [Fact]
    public async Task The_admin_api_lists_filters_pages_shows_recovers_and_aborts_and_refuses_bad_input()
    {
        var port = ChildSilo.FreePort();
        await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "adminapi", TimeSpan.FromSeconds(90),
            new Dictionary<string, string>
            {
                ["TwoPC:Admin:Enabled"] = "true",
                ["TwoPC:Admin:Port"] = port.ToString(),
                // Long enough to see a transaction in doubt while a participant's row is locked.
                ["TwoPC:Protocol:PrepareTimeout"] = "00:00:20",
                ["TwoPC:Protocol:DecisionRetention"] = "00:01:00",
            });
        using var http = new AdminHttp(port);
        var databases = PostgresTopology.DeriveDatabases(silo.AdminConnectionString, silo.Prefix);
        try
        {
            await http.WaitUpAsync(TimeSpan.FromSeconds(30));
            Assert.True(await AdminHttp.OutputShowsAsync(() => silo.Output, $"Operator console: http://127.0.0.1:{port}/", TimeSpan.FromSeconds(10)), silo.Output);
            await using var client = await LibraryClient.ConnectAsync(silo);
            var grains = client.Grains;
            var run = Guid.NewGuid().ToString("N")[..8];
            var sku = $"sku-{run}";
            var account = $"acct-{run}";
            var blocked = $"blocked-{run}";
            await grains.GetGrain<IInventoryGrain>(sku).SetStock(100);
            await grains.GetGrain<IPaymentAccountGrain>(account).SetBalance(100_000);
            await grains.GetGrain<IPaymentAccountGrain>(blocked).SetBalance(100_000);
            OrderRequest Order(string id, int quantity, string? payer = null) => new(id, [new OrderLine(sku, quantity, 10)], payer ?? account, "1 Main St");
            async Task<OrderOutcome> Place(OrderRequest order) =>
                await grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(order.OrderId)).PlaceOrder(order);

            var before = DateTimeOffset.UtcNow;
            var committed = new List<string>();
            for (var i = 0; i < 5; i++)
            {
                var id = $"ok-{run}-{i}";
                Assert.Equal(OrderStatus.Committed, (await Place(Order(id, 1))).Status);
                committed.Add(id);
            }

            var aborted = $"no-{run}";
            Assert.Equal(OrderStatus.Aborted, (await Place(Order(aborted, 1_000))).Status);

            // The caller is answered once the decision is durable; phase two finishes just after.
            await NothingInFlight(http);

            // Listing everything: newest first, every decided order there with its status.
            var all = await http.GetAsync("/api/transactions?limit=500");
            Assert.True(all.Status == HttpStatusCode.OK, all.ToString());
            var items = Items(all);
            Assert.Equal(6, all.Body.GetProperty("total").GetInt64());
            Assert.Equal(items.OrderByDescending(i => i.GetProperty("startedAt").GetDateTimeOffset()).Select(Id), items.Select(Id));
            Assert.All(committed, c => Assert.Equal("committed", Status(items, c)));
            Assert.Equal("aborted", Status(items, aborted));

            // Status filters.
            var onlyAborted = await http.GetAsync("/api/transactions?status=aborted");
            Assert.Equal([$"tx-{aborted}"], Items(onlyAborted).Select(Id));
            Assert.Contains("insufficient", Items(onlyAborted)[0].GetProperty("abortReason").GetString() ?? "", StringComparison.OrdinalIgnoreCase);
            Assert.Equal(5, (await http.GetAsync("/api/transactions?status=committed")).Body.GetProperty("total").GetInt64());

            // Order id filter (an order id or its transaction id), and a time range that excludes everything.
            Assert.Equal([$"tx-{committed[2]}"], Items(await http.GetAsync($"/api/transactions?orderId={committed[2]}")).Select(Id));
            Assert.Equal([$"tx-{committed[2]}"], Items(await http.GetAsync($"/api/transactions?orderId=tx-{committed[2]}")).Select(Id));
            var beforeAll = Uri.EscapeDataString(before.AddMinutes(-5).ToString("O"));
            Assert.Equal(0, (await http.GetAsync($"/api/transactions?until={beforeAll}")).Body.GetProperty("total").GetInt64());
            Assert.Equal(6, (await http.GetAsync($"/api/transactions?since={Uri.EscapeDataString(before.AddSeconds(-1).ToString("O"))}")).Body.GetProperty("total").GetInt64());
            Assert.Equal(6, (await http.GetAsync("/api/transactions?since=10m")).Body.GetProperty("total").GetInt64());

            // Paging: pages are disjoint, in order, and together are the whole list.
            var pages = new List<string>();
            for (var offset = 0; offset < 6; offset += 4)
            {
                var page = await http.GetAsync($"/api/transactions?limit=4&offset={offset}");
                Assert.Equal(6, page.Body.GetProperty("total").GetInt64());
                pages.AddRange(Items(page).Select(Id));
            }
            Assert.Equal(items.Select(Id), pages);

            // Bad input: 400 with a JSON error naming the problem.
            foreach (var (query, expected) in new[]
                     {
                         ("status=lost", "status must be one of"),
                         ("since=yesterday", "since must be"),
                         ("until=2026-11-30T04:00:00", "until must be"),
                         ("offset=-1", "offset must be"),
                         ("limit=0", "limit must be"),
                         ("limit=abc", "limit must be"),
                         ($"since={Uri.EscapeDataString(before.ToString("O"))}&until={beforeAll}", "must be before"),
                     })
            {
                var bad = await http.GetAsync($"/api/transactions?{query}");
                Assert.True(bad.Status == HttpStatusCode.BadRequest, $"{query}: {bad}");
                Assert.Contains(expected, bad.Error);
            }

            // What the console does not serve is a JSON error too.
            var noRoute = await http.GetAsync("/api/nothing-here");
            Assert.True(noRoute.Status == HttpStatusCode.NotFound, noRoute.ToString());
            Assert.Contains("GET /api/nothing-here: no such page or endpoint", noRoute.Error);
            var wrongMethod = await http.GetAsync("/api/recover");
            Assert.True(wrongMethod.Status == HttpStatusCode.MethodNotAllowed, wrongMethod.ToString());
            Assert.Contains("method not allowed", wrongMethod.Error);

            // Timeline of one transaction; 404 for an unknown one, 400 for a bad id.
            var timeline = await http.GetAsync($"/api/transactions/{committed[0]}");
            Assert.True(timeline.Status == HttpStatusCode.OK, timeline.ToString());
            Assert.Equal("Commit", timeline.Body.GetProperty("decision").GetString());
            Assert.Contains(timeline.Body.GetProperty("events").EnumerateArray(), e => e.GetProperty("what").GetString()!.StartsWith("decision Commit"));
            var unknown = $"unknown-{run}";
            var missing = await http.GetAsync($"/api/transactions/{unknown}");
            Assert.Equal(HttpStatusCode.NotFound, missing.Status);
            Assert.Contains($"tx-{unknown}", missing.Error);
            var badId = await http.GetAsync("/api/transactions/a%20b");
            Assert.Equal(HttpStatusCode.BadRequest, badId.Status);
            Assert.Contains("may contain only", badId.Error);

            // Heuristic abort: bad bodies change nothing; a committed transaction is refused (409); an unknown id
            // is aborted (and so used up) and listed as aborted.
            foreach (var body in new[] { null, "{}", "{\"reason\": \"  \"}", "not json" })
            {
                var bad = await http.PostAsync($"/api/transactions/{unknown}/abort", body);
                Assert.True(bad.Status == HttpStatusCode.BadRequest, $"{body}: {bad}");
                Assert.Contains("reason", bad.Error);
            }
            Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync($"/api/transactions/{unknown}")).Status);
            var refused = await http.PostAsync($"/api/transactions/{committed[1]}/abort", "{\"reason\": \"test\"}");
            Assert.True(refused.Status == HttpStatusCode.Conflict, refused.ToString());
            Assert.Contains("committed", refused.Error);
            Assert.Equal("committed", Status(Items(await http.GetAsync($"/api/transactions?orderId={committed[1]}")), committed[1]));
            var burned = await http.PostAsync($"/api/transactions/{unknown}/abort", "{\"reason\": \"coordinator lost\"}");
            Assert.True(burned.Status == HttpStatusCode.OK, burned.ToString());
            Assert.Equal("Abort", burned.Body.GetProperty("decision").GetString());
            await NothingInFlight(http);
            var burnedRow = Items(await http.GetAsync($"/api/transactions?orderId={unknown}")).Single();
            Assert.Equal("aborted", burnedRow.GetProperty("status").GetString());
            Assert.True(burnedRow.GetProperty("heuristic").GetBoolean());
            Assert.Equal(OrderStatus.Aborted, (await Place(Order(unknown, 1))).Status);

            await NothingInFlight(http);
            // The overview: decisions of the window by outcome and reason (the metrics' reason names), phase latencies, nothing in doubt.
            var overview = await http.GetAsync("/api/overview?minutes=5");
            Assert.True(overview.Status == HttpStatusCode.OK, overview.ToString());
            Assert.Equal(5, overview.Body.GetProperty("committed").GetInt32());
            Assert.Equal(2, overview.Body.GetProperty("aborted").GetInt32());
            Assert.Equal(0, overview.Body.GetProperty("inDoubt").GetInt32());
            var reasons = overview.Body.GetProperty("abortsByReason").EnumerateArray().ToDictionary(r => r.GetProperty("reason").GetString()!, r => r.GetProperty("count").GetInt32());
            Assert.Equal(new Dictionary<string, int> { ["insufficient_stock"] = 1, ["heuristic"] = 1 }, reasons);
            // The presumed (heuristic) abort never prepared: only the six real transactions have phase latencies.
            var prepare = overview.Body.GetProperty("prepare");
            Assert.Equal(6, prepare.GetProperty("count").GetInt32());
            Assert.InRange(prepare.GetProperty("p50").GetDouble(), 0, prepare.GetProperty("p99").GetDouble());
            Assert.Equal(6, overview.Body.GetProperty("phaseTwo").GetProperty("count").GetInt32());
            log.WriteLine($"overview: {overview.Text}");
            Assert.Equal(HttpStatusCode.BadRequest, (await http.GetAsync("/api/overview?minutes=0")).Status);
            Assert.Contains("minutes must be", (await http.GetAsync("/api/overview?minutes=x")).Error);

            // The page itself is served on the same port (its behaviour is tested in a browser).
            var html = await http.GetAsync("/");
            Assert.Contains("OrleansTwoPC operator console", html.Text);

            // In doubt: the payer's row is locked, so its prepare cannot be written while the SKU and the shipment
            // are prepared and no decision exists.
            var doubtful = $"doubt-{run}";
            Task<OrderOutcome> placing;
            await using (var locker = new NpgsqlConnection(databases.Payments))
            {
                await locker.OpenAsync();
                await using (var begin = new NpgsqlCommand("BEGIN; SELECT 1 FROM twopc_grain_state WHERE state_name = @state FOR UPDATE", locker))
                {
                    begin.Parameters.AddWithValue("state", OrleansTwoPC.Protocol.StateNames.Payment);
                    await begin.ExecuteNonQueryAsync();
                }

                placing = Place(Order(doubtful, 1, blocked));
                AdminReply inDoubt;
                for (var waited = Stopwatch.StartNew(); ; await Task.Delay(100))
                {
                    inDoubt = await http.GetAsync("/api/transactions?status=in-doubt");
                    // Listed once one participant is prepared; the SKU's prepare may land a moment after the shipment's.
                    if (Items(inDoubt).Any(i => Id(i) == $"tx-{doubtful}" && i.GetProperty("participants").EnumerateArray().Any(p => p.GetString() == $"inventory/{sku}"))) break;
                    Assert.True(waited.Elapsed < TimeSpan.FromSeconds(20), $"tx-{doubtful} never listed in doubt with inventory/{sku} prepared: {inDoubt}");
                }
                var row = Items(inDoubt).Single(i => Id(i) == $"tx-{doubtful}");
                Assert.Equal("None", row.GetProperty("decision").GetString());
                Assert.Contains($"inventory/{sku}", row.GetProperty("participants").EnumerateArray().Select(p => p.GetString()));
                Assert.Contains($"tx-{doubtful}", Items(await http.GetAsync("/api/transactions?limit=500")).Select(Id));
                Assert.DoesNotContain($"tx-{doubtful}", Items(await http.GetAsync("/api/transactions?status=committed&limit=500")).Select(Id));
                log.WriteLine($"in doubt: {row}");
                var doubtOverview = await http.GetAsync("/api/overview");
                Assert.Equal(1, doubtOverview.Body.GetProperty("inDoubt").GetInt32());
                Assert.True(doubtOverview.Body.GetProperty("oldestInDoubtSeconds").GetDouble() >= 0, doubtOverview.ToString());
                await using var release = new NpgsqlCommand("ROLLBACK", locker);
                await release.ExecuteNonQueryAsync();
            }

            // Recover it (and all): the reports come back as JSON, and the transaction ends decided.
            var recovered = await http.PostAsync($"/api/transactions/{doubtful}/recover");
            Assert.True(recovered.Status == HttpStatusCode.OK, recovered.ToString());
            Assert.True(recovered.Body.TryGetProperty("participantsAsked", out _), recovered.ToString());
            var outcome = await placing.WaitAsync(TimeSpan.FromSeconds(60));
            log.WriteLine($"{doubtful}: {outcome.Status}");
            var recoverAll = await http.PostAsync("/api/recover");
            Assert.True(recoverAll.Status == HttpStatusCode.OK, recoverAll.ToString());
            Assert.Equal(0, recoverAll.Body.GetProperty("errors").GetArrayLength());
            for (var waited = Stopwatch.StartNew(); ; await Task.Delay(200))
            {
                var now = Items(await http.GetAsync($"/api/transactions?orderId={doubtful}")).Single();
                if (now.GetProperty("status").GetString() is "committed" or "aborted") break;
                Assert.True(waited.Elapsed < TimeSpan.FromSeconds(30), $"tx-{doubtful} still {now}");
            }
            Assert.Equal(0, (await http.GetAsync("/api/transactions?status=in-doubt")).Body.GetProperty("total").GetInt64());

            // tpc list answers the same query.
            var api = Items(await http.GetAsync("/api/transactions?status=committed&limit=3")).Select(Id).ToList();
            var cli = await Tpc.RunAsync(["list", "--status", "committed", "--limit", "3", "--json", .. silo.TpcSettings]);
            Assert.True(cli.ExitCode == 0, cli.ToString());
            using var listed = JsonDocument.Parse(cli.Out);
            Assert.Equal(api, listed.RootElement.GetProperty("items").EnumerateArray().Select(Id));
            var text = await Tpc.RunAsync(["list", "--status", "aborted", "--since", "10m", .. silo.TpcSettings]);
            Assert.True(text.ExitCode == 0, text.ToString());
            Assert.Contains($"tx-{aborted}", text.Out);
            Assert.Contains($"tx-{unknown}", text.Out);
            Assert.DoesNotContain($"tx-{committed[0]}", text.Out);
            log.WriteLine(text.Out);
        }
        catch
        {
            log.WriteLine(silo.Output);
            throw;
        }
    }

    private static async Task NothingInFlight(AdminHttp http)
    {
        for (var waited = Stopwatch.StartNew(); ; await Task.Delay(100))
        {
            var inFlight = await http.GetAsync("/api/transactions?status=in-flight");
            if (inFlight.Body.GetProperty("total").GetInt64() == 0) return;
            Assert.True(waited.Elapsed < TimeSpan.FromSeconds(20), $"still in flight after 20 s: {inFlight}");
        }
    }

    private static List<JsonElement> Items(AdminReply reply)
    {
        Assert.True(reply.Status == HttpStatusCode.OK, reply.ToString());
        return reply.Body.GetProperty("items").EnumerateArray().ToList();
    }

    private static string Id(JsonElement item) => item.GetProperty("transactionId").GetString()!;

    private static string? Status(IEnumerable<JsonElement> items, string orderId) =>
        items.Single(i => Id(i) == $"tx-{orderId}").GetProperty("status").GetString();
}
