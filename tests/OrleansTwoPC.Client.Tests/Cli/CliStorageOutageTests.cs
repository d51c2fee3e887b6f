using OrleansTwoPC.Abstractions;
using System.Diagnostics;
using System.Text.Json;
using OrleansTwoPC.Client.Tests.Infrastructure;
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

            // An external tpc process that is connected when PostgreSQL goes down.
            var load = Tpc.RunAsync(["load", "--orders", "1500", "--concurrency", "4", "--skus", "10", "--accounts", "10",
                "--run-id", $"l{run}", "--json", .. silo.TpcSettings]);
            await Task.Delay(TimeSpan.FromSeconds(3));
            Assert.False(load.IsCompleted, "the load finished before the outage");

            // Library callers placing orders concurrently across the crash.
            var streaming = true;
            var streamed = new System.Collections.Concurrent.ConcurrentBag<(DateTime At, TimeSpan Elapsed, string Answer)>();
            var streams = Enumerable.Range(0, 4).Select(_ => Task.Run(async () =>
            {
                while (Volatile.Read(ref streaming))
                {
                    var at = DateTime.UtcNow;
                    var placed = await Place(client, NewRequest());
                    streamed.Add((at, placed.Elapsed, placed.Describe()));
                }
            })).ToList();
            await Task.Delay(500);
            await postgres.CrashAsync();
            var outage = Stopwatch.StartNew();
            log.WriteLine($"PostgreSQL crashed (immediate stop) at {DateTime.UtcNow:HH:mm:ss.fff}");

            var libraryAnswers = new List<(TimeSpan Elapsed, string Answer)>();
            var tpcAnswers = new List<TpcResult>();
            var startups = new List<TimeSpan>();
            while (outage.Elapsed < Outage)
            {
                // The library path: a new coordinator (its activation reads storage) and the admin views (SQL).
                var placed = await Place(client, NewRequest());
                libraryAnswers.Add((placed.Elapsed, placed.Describe()));
                var listed = await Timed(() => client.Grains.GetGrain<ITransactionAdminGrain>(0).ListUnfinished());
                libraryAnswers.Add((listed.Elapsed, listed.Error is null ? "listed" : Describe(listed.Error)));

                // A tpc process started during the outage, and one that stops before connecting (its start-up alone).
                tpcAnswers.Add(await Tpc.RunAsync(NewOrder()));
                startups.Add((await Tpc.RunAsync(["order", "--id", "x", "--account", "a", "--address", "b", "--line", "s:1:1"])).Elapsed);
            }

            await postgres.RestartAsync();
            await Task.Delay(2000);
            Volatile.Write(ref streaming, false);
            await Task.WhenAll(streams);
            var failed = streamed.Where(s => !s.Answer.StartsWith("Committed", StringComparison.Ordinal)).ToList();
            log.WriteLine($"library stream: {streamed.Count} orders, {failed.Count} not committed, slowest answer {streamed.Max(s => s.Elapsed).TotalMilliseconds:0} ms");
            foreach (var answer in failed.GroupBy(s => s.Answer.Split(':')[0]))
                log.WriteLine($"  {answer.Count()}x {answer.First().Answer}");
            log.WriteLine($"PostgreSQL started again after {outage.Elapsed.TotalSeconds:0.0} s");

            foreach (var (elapsed, answer) in libraryAnswers) log.WriteLine($"library call: {elapsed.TotalMilliseconds,6:0} ms  {answer}");
            foreach (var result in tpcAnswers) log.WriteLine($"tpc order: {result.Elapsed.TotalMilliseconds,6:0} ms  exit {result.ExitCode}  {result.Error.Trim()}");

            var loadResult = await load;
            log.WriteLine(loadResult.ToString());

            libraryAnswers.AddRange(failed.Select(s => (s.Elapsed, s.Answer)));
            Assert.NotEmpty(failed);
            Assert.All(streamed, s => Assert.True(s.Elapsed < AnswerBound, $"{s.Elapsed.TotalMilliseconds:0} ms: {s.Answer}"));
            Assert.All(libraryAnswers, a => Assert.True(a.Elapsed < AnswerBound, $"{a.Elapsed.TotalMilliseconds:0} ms: {a.Answer}"));
            Assert.All(libraryAnswers, a => Assert.Matches("(?i)storage.*unavailable", a.Answer));
            Assert.All(libraryAnswers, a => Assert.DoesNotContain("\n", a.Answer));
            Assert.All(libraryAnswers, a => Assert.DoesNotContain("NOT A CONTRACT TYPE", a.Answer));
            // A new process pays the .NET start-up first, which on a loaded machine alone can take seconds.
            var startup = startups.Max();
            log.WriteLine($"tpc start-up (a run that ends before connecting): {startups.Min().TotalMilliseconds:0} to {startup.TotalMilliseconds:0} ms");
            Assert.All(tpcAnswers, r =>
            {
                Assert.True(r.Elapsed - startup < AnswerBound, $"{r.Elapsed.TotalMilliseconds:0} ms with start-up up to {startup.TotalMilliseconds:0} ms: {r}");
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
