using OrleansTwoPC.Abstractions;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// PostgreSQL crashes (<c>pg_ctl stop -m immediate</c>) under a real silo process while real <c>tpc</c>
/// processes and a library client place orders: every call is answered quickly with one line saying the
/// storage is unavailable, in a type the client can read, and after PostgreSQL is started again on the
/// same data directory every command works without restarting anything.
/// </summary>
public sealed class CliStorageOutageTests(ITestOutputHelper log)
{
    private static readonly TimeSpan AnswerBound = TimeSpan.FromSeconds(2);
    private static readonly TimeSpan Outage = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task With_PostgreSQL_down_every_call_is_answered_within_2_s_and_every_command_works_after_it_returns()
    {
        await using var postgres = await OutagePostgres.StartAsync();
        await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "outage", TimeSpan.FromSeconds(60));
        var run = Guid.NewGuid().ToString("N")[..8];
        var sku = $"sku-{run}";
        var account = $"acct-{run}";
        var orderNumber = 0;
        string[] NewOrder() =>
        [
            "order", "--id", $"o-{run}-{++orderNumber}", "--account", account, "--address", "1 Main St", "--line", $"{sku}:1:100", .. silo.TpcSettings,
        ];
        OrderRequest NewRequest() => new($"lib-{run}-{Interlocked.Increment(ref orderNumber)}", [new OrderLine(sku, 1, 100)], account, "1 Main St");

        try
        {
            await Expect(0, ["seed", "--sku", $"{sku}=100000", "--account", $"{account}=100000000", .. silo.TpcSettings]);
            await Expect(0, NewOrder());
            await using var client = await LibraryClient.ConnectAsync(silo);
            Assert.Equal(OrderStatus.Committed, (await Place(client, NewRequest())).Outcome?.Status);

            // An external tpc process that is connected and placing orders when PostgreSQL goes down.
            var load = Tpc.RunAsync(["load", "--orders", "600", "--concurrency", "4", "--skus", "10", "--accounts", "10",
                "--run-id", $"l{run}", "--json", .. silo.TpcSettings]);
            await WaitForOrders(silo, $"tx-l{run}-", 20, load);

            // Library callers placing orders across the crash (each order a new coordinator, whose activation reads storage).
            var streaming = true;
            var streamed = new ConcurrentBag<(TimeSpan Elapsed, string Answer)>();
            var streams = Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
            {
                while (Volatile.Read(ref streaming))
                {
                    var placed = await Place(client, NewRequest());
                    streamed.Add((placed.Elapsed, placed.Describe()));
                    await Task.Delay(10);
                }
            })).ToList();
            await Task.Delay(500);
            await postgres.CrashAsync();
            var outage = Stopwatch.StartNew();
            log.WriteLine($"PostgreSQL crashed (immediate stop) at {DateTime.UtcNow:HH:mm:ss.fff}");

            // While the stream and the load run: the admin views, which read the databases directly.
            var libraryAnswers = new List<(TimeSpan Elapsed, string Answer)>();
            while (outage.Elapsed < TimeSpan.FromSeconds(3))
            {
                var listed = await Timed(() => client.Grains.GetGrain<ITransactionAdminGrain>(0).ListUnfinished());
                libraryAnswers.Add((listed.Elapsed, listed.Error is null ? "listed" : Describe(listed.Error)));
                await Task.Delay(200);
            }

            Volatile.Write(ref streaming, false);
            await Task.WhenAll(streams);
            var loadResult = await load;
            log.WriteLine(loadResult.ToString());

            // tpc processes started during the outage, one at a time. Each is paired with the same command
            // pointed at a port where no database listens: what starting tpc and being refused costs on this
            // machine now (seconds, when the machine is loaded), so an outage may add no waiting to it.
            var tpcAnswers = new List<TpcResult>();
            var refusedRuns = new List<TimeSpan>();
            var nowhere = $"--ConnectionStrings:PostgresServer=Host=127.0.0.1;Port={ChildSilo.FreePort()};Username=postgres";
            // At least one pair, also when the load above outlasted the outage on a busy machine.
            do
            {
                tpcAnswers.Add(await Tpc.RunAsync(NewOrder()));
                refusedRuns.Add((await Tpc.RunAsync([.. NewOrder().Where(a => !a.StartsWith("--ConnectionStrings:", StringComparison.Ordinal)), nowhere])).Elapsed);
            }
            while (outage.Elapsed < Outage);

            await postgres.RestartAsync();
            log.WriteLine($"PostgreSQL started again after {outage.Elapsed.TotalSeconds:0.0} s");

            var failed = streamed.Where(s => !s.Answer.StartsWith("Committed", StringComparison.Ordinal)).ToList();
            log.WriteLine($"library stream: {streamed.Count} orders, {failed.Count} not committed, slowest answer {streamed.Max(s => s.Elapsed).TotalMilliseconds:0} ms");
            foreach (var answer in failed.GroupBy(s => s.Answer.Split(':')[0]))
                log.WriteLine($"  {answer.Count()}x {answer.First().Answer}");
            foreach (var (elapsed, answer) in libraryAnswers) log.WriteLine($"admin call: {elapsed.TotalMilliseconds,6:0} ms  {answer}");
            foreach (var result in tpcAnswers) log.WriteLine($"tpc order: {result.Elapsed.TotalMilliseconds,6:0} ms  exit {result.ExitCode}  {result.Error.Trim()}");

            libraryAnswers.AddRange(failed);
            Assert.NotEmpty(failed);
            Assert.All(streamed, s => Assert.True(s.Elapsed < AnswerBound, $"{s.Elapsed.TotalMilliseconds:0} ms: {s.Answer}"));
            Assert.All(libraryAnswers, a => Assert.True(a.Elapsed < AnswerBound, $"{a.Elapsed.TotalMilliseconds:0} ms: {a.Answer}"));
            Assert.All(libraryAnswers, a => Assert.Matches("(?i)storage.*unavailable", a.Answer));
            Assert.All(libraryAnswers, a => Assert.DoesNotContain("\n", a.Answer));
            Assert.All(libraryAnswers, a => Assert.DoesNotContain("NOT A CONTRACT TYPE", a.Answer));
            var refused = refusedRuns.Max();
            log.WriteLine($"tpc pointed at no database: {refusedRuns.Min().TotalMilliseconds:0} to {refused.TotalMilliseconds:0} ms");
            Assert.NotEmpty(tpcAnswers);
            Assert.All(tpcAnswers, r =>
            {
                Assert.True(r.Elapsed - refused < AnswerBound,
                    $"{r.Elapsed.TotalMilliseconds:0} ms, while a run refused at once took up to {refused.TotalMilliseconds:0} ms: {r}");
                Assert.NotEqual(0, r.ExitCode);
                Assert.True(r.ErrorLines.Count == 1, r.ToString());
                Assert.Matches("(?i)storage.*unavailable", r.Error);
            });

            // The connected tpc process: every order it placed was answered within the bound, with a clear line.
            using (var summary = JsonDocument.Parse(loadResult.Out))
            {
                var root = summary.RootElement;
                var max = root.GetProperty("latencyMs").GetProperty("max").GetDouble();
                log.WriteLine($"tpc load: slowest answer {max:0} ms");
                Assert.True(max < AnswerBound.TotalMilliseconds, $"slowest order of the running tpc load took {max:0} ms");
                var failures = root.GetProperty("failuresByMessage").EnumerateObject().Select(p => p.Name).ToList();
                Assert.All(failures, f => Assert.Matches("(?i)storage.*unavailable", f));
            }

            // PostgreSQL is back: every command works, nothing was restarted.
            await Expect(0, ["seed", "--sku", $"{sku}=100000", .. silo.TpcSettings]);
            await Expect(0, NewOrder());
            Assert.Equal(OrderStatus.Committed, (await Place(client, NewRequest())).Outcome?.Status);
            await Expect(0, ["stock", sku, .. silo.TpcSettings]);
            await Expect(0, ["balance", account, .. silo.TpcSettings]);
            await Expect(0, ["tx", $"o-{run}-1", .. silo.TpcSettings]);
            await Expect(0, ["recover", "--all", .. silo.TpcSettings]);
            await Expect(0, ["in-doubt", .. silo.TpcSettings]);
            await Expect(0, ["abort", $"never-{run}", "--reason", "outage test", "--yes", .. silo.TpcSettings]);
            await Expect(0, ["check", "--wait", "40", .. silo.TpcSettings]);
        }
        catch
        {
            log.WriteLine(silo.Output);
            throw;
        }
    }

    /// <summary>Waits until at least <paramref name="count"/> orders whose transaction id starts with
    /// <paramref name="prefix"/> have a coordinator record: the load is connected and placing orders.</summary>
    private static async Task WaitForOrders(SiloServer silo, string prefix, int count, Task<TpcResult> load)
    {
        var reader = new StoredStateReader(PostgresTopology.DeriveDatabases(silo.AdminConnectionString, silo.Prefix));
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            if (load.IsCompleted) throw new InvalidOperationException($"the load ended before the outage: {await load}");
            var coordinators = await reader.CoordinatorsAsync(unfinishedOnly: false);
            if (coordinators.Count(c => c.Key.StartsWith(prefix, StringComparison.Ordinal)) >= count) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException("the load placed no orders within 60 s");
            await Task.Delay(100);
        }
    }

    private async Task<TpcResult> Expect(int exitCode, string[] arguments)
    {
        var result = await Tpc.RunAsync(arguments);
        log.WriteLine($"tpc {arguments[0]}: {result.Elapsed.TotalMilliseconds:0} ms, exit {result.ExitCode}");
        Assert.True(result.ExitCode == exitCode, $"tpc {string.Join(' ', arguments)}: {result}");
        return result;
    }

    private sealed record Placed(TimeSpan Elapsed, OrderOutcome? Outcome, Exception? Error)
    {
        public string Describe() => Outcome is { } o ? $"{o.Status}: {o.Reason}" : CliStorageOutageTests.Describe(Error!);
    }

    private static async Task<Placed> Place(LibraryClient client, OrderRequest order)
    {
        var call = await Timed(() => client.Grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(order.OrderId)).PlaceOrder(order));
        return new Placed(call.Elapsed, call.Value, call.Error);
    }

    private static async Task<(TimeSpan Elapsed, T? Value, Exception? Error)> Timed<T>(Func<Task<T>> call)
    {
        var stopwatch = Stopwatch.StartNew();
        try
        {
            var value = await call();
            return (stopwatch.Elapsed, value, null);
        }
        catch (Exception ex)
        {
            return (stopwatch.Elapsed, default, ex);
        }
    }

    /// <summary>What a caller sees of an exception; one a client could not deserialize is marked as such.</summary>
    private static string Describe(Exception error) =>
        (LibraryClient.IsContractOrBaseLibrary(error) ? "" : "NOT A CONTRACT TYPE ") + $"{error.GetType().FullName}: {error.Message}";
}
