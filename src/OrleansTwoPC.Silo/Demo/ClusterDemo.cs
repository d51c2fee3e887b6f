using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Orleans.Configuration;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Checking;

namespace OrleansTwoPC.Silo.Demo;

public sealed class ClusterDemoOptions
{
    public int Orders { get; set; } = 400;
    public int Concurrency { get; set; } = 16;

    /// <summary>How often an order is resubmitted after an exception or an Unavailable outcome (PlaceOrder is idempotent).</summary>
    public int Resubmits { get; set; } = 3;

    public int Seed { get; set; } = 2026;
}

/// <summary>
/// The cluster demo: a PostgreSQL (embedded unless <c>ConnectionStrings:PostgresServer</c> is set), two silo
/// processes of this executable, a seeded catalogue of three hot SKUs, a stream of orders of which some must
/// abort, one silo process SIGKILLed after about a third of the stream and replaced, then recovery and a
/// reconciliation read both through the grains and straight from the four databases. It cleans up its
/// processes and throwaway databases whatever happens.
/// </summary>
public static class ClusterDemo
{
    private const string ServiceId = "OrleansTwoPC";

    // Children of this process, killed on exit whatever happened.
    private static readonly ConcurrentDictionary<int, ChildSilo> Children = new();

    static ClusterDemo()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (var child in Children.Values)
            {
                try { child.Kill(); } catch { /* best effort */ }
            }
        };
    }

    public static async Task<int> RunAsync(IConfiguration baseConfiguration, ILogger logger, TextWriter output, CancellationToken cancellationToken)
    {
        var options = baseConfiguration.GetSection("TwoPC:ClusterDemo").Get<ClusterDemoOptions>() ?? new ClusterDemoOptions();
        var id = Guid.NewGuid().ToString("N")[..10];
        var prefix = $"cdemo_{id}";
        var clusterId = $"cluster-demo-{id}";
        var configuration = new ConfigurationBuilder()
            .AddConfiguration(baseConfiguration)
            .AddInMemoryCollection(new Dictionary<string, string?> { [PostgresTopology.DatabasePrefixKey] = prefix })
            .Build();
        if (ServiceDatabases.Names.Any(n => !string.IsNullOrWhiteSpace(configuration.GetConnectionString(n))))
        {
            output.WriteLine("cluster-demo needs ConnectionStrings:PostgresServer (or nothing: embedded PostgreSQL), not the four service connection strings");
            return 2;
        }

        var total = Stopwatch.StartNew();
        PostgresRuntime? postgres = null;
        var silos = new List<ChildSilo>();
        IHost? client = null;
        try
        {
            output.WriteLine("== Cluster demo: 2 silo processes, one SIGKILLed mid-run and replaced, then recovery and reconciliation");
            postgres = await PostgresTopology.StartAsync(configuration, logger, cancellationToken);
            var admin = postgres.ServerConnectionString!;
            var databases = postgres.Databases;
            output.WriteLine($"   PostgreSQL: {(postgres.Source == PostgresSource.Embedded ? "embedded, throwaway" : "configured server")} " +
                             $"{PostgresConnectionStrings.Redact(admin)}; databases {prefix}_{{inventory,payments,shipping,coordinator}}");

            ChildSilo StartSilo(string name)
            {
                var silo = ChildSilo.Start(name, admin, prefix, clusterId, ServiceId, databases.Coordinator);
                Children[silo.Pid] = silo;
                silos.Add(silo);
                return silo;
            }

            var first = new[] { StartSilo("silo-1"), StartSilo("silo-2") };
            foreach (var silo in first)
            {
                await WaitActiveOrExplainAsync(silo, output, cancellationToken);
                output.WriteLine($"   {silo.Name} active: pid {silo.Pid}, silo port {silo.SiloPort}, gateway port {silo.GatewayPort} ({total.Elapsed.TotalSeconds:0.0} s)");
            }

            client = await ConnectClientAsync(clusterId, databases.Coordinator, cancellationToken);
            var grains = client.Services.GetRequiredService<IClusterClient>();

            // Seed: three hot SKUs whose stock covers only part of the demand; every fifth account is poor.
            var random = new Random(options.Seed);
            var prices = new Dictionary<string, long> { ["HOT-RED"] = 1500, ["HOT-GREEN"] = 2500, ["HOT-BLUE"] = 990 };
            var catalogue = new Catalogue(
                new Dictionary<string, long> { ["HOT-RED"] = 300, ["HOT-GREEN"] = 200, ["HOT-BLUE"] = 150 },
                Enumerable.Range(1, 40).ToDictionary(i => $"acct-{i:00}", i => i % 5 == 0 ? 3_000L : 200_000L));
            await catalogue.SeedAsync(grains);
            var orders = Enumerable.Range(1, options.Orders).Select(i =>
            {
                var skus = prices.Keys.OrderBy(_ => random.Next()).Take(random.Next(1, 3));
                return new OrderRequest($"cdemo-{id}-{i:0000}",
                    skus.Select(s => new OrderLine(s, random.Next(1, 4), prices[s])).ToList(),
                    $"acct-{random.Next(1, 41):00}", $"{i} Market Square, Shelbyville");
            }).ToList();
            output.WriteLine($"   seeded {catalogue.Stock.Count} hot SKUs ({string.Join(", ", catalogue.Stock.Select(s => $"{s.Key} {s.Value}"))}) " +
                             $"and {catalogue.Balances.Count} accounts ({catalogue.Balances.Count(b => b.Value < 10_000)} poor)");
            output.WriteLine($"== {orders.Count} orders from {options.Concurrency} concurrent callers (an order is resubmitted up to {options.Resubmits} times after an exception or an Unavailable answer)");

            // The stream; after a third of the orders have finished, silo-1 is SIGKILLed and a replacement started.
            var killAt = Math.Max(1, orders.Count / 3);
            var killed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var sinceKill = new Stopwatch();
            var results = new OrderResult[orders.Count];
            var resubmits = 0;
            var finished = 0;
            var next = -1;
            var clock = Stopwatch.StartNew();
            var callers = Enumerable.Range(0, Math.Min(options.Concurrency, orders.Count)).Select(async _ =>
            {
                int i;
                while ((i = Interlocked.Increment(ref next)) < orders.Count)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var started = Stopwatch.GetTimestamp();
                    var result = await OrderRunner.PlaceAsync(grains, orders[i]);
                    for (var attempt = 1; (result.Outcome is null || result.Outcome.Status == OrderStatus.Unavailable) && attempt <= options.Resubmits; attempt++)
                    {
                        Interlocked.Increment(ref resubmits);
                        await Task.Delay(250 * attempt, cancellationToken);
                        result = await OrderRunner.PlaceAsync(grains, orders[i]);
                    }
                    results[i] = result with { Latency = Stopwatch.GetElapsedTime(started) };
                    if (Interlocked.Increment(ref finished) == killAt) killed.TrySetResult();
                }
            }).ToList();
            var streamDone = Task.WhenAll(callers);
            var chaos = Task.Run(async () =>
            {
                if (await Task.WhenAny(killed.Task, streamDone) != killed.Task) return null;
                var victim = first[0];
                victim.Kill();
                sinceKill.Start();
                output.WriteLine($"   !! SIGKILL {victim.Name} (pid {victim.Pid}) after {killAt} of {orders.Count} orders finished, at {clock.Elapsed.TotalSeconds:0.00} s into the stream");
                var replacement = StartSilo("silo-3");
                output.WriteLine($"   starting replacement silo-3 (pid {replacement.Pid})");
                await WaitActiveOrExplainAsync(replacement, output, cancellationToken);
                output.WriteLine($"   silo-3 active {sinceKill.Elapsed.TotalSeconds:0.0} s after the kill (pid {replacement.Pid}, silo port {replacement.SiloPort})");
                return replacement;
            }, cancellationToken);
            await streamDone.WaitAsync(cancellationToken);
            var elapsed = clock.Elapsed;
            output.WriteLine($"   stream finished in {elapsed.TotalSeconds:0.00} s");
            await chaos.WaitAsync(cancellationToken);

            // Recovery: wait until no participant holds a prepared reservation and every decision is completed.
            var checker = new InvariantChecker(databases);
            var report = await checker.WaitUntilQuiescentAsync(TimeSpan.FromSeconds(60), cancellationToken: cancellationToken);
            var killToQuiescence = sinceKill.IsRunning ? sinceKill.Elapsed : (TimeSpan?)null;
            var reconciliation = await Reconciliation.CheckAsync(grains, catalogue, results, TimeSpan.FromSeconds(30)).WaitAsync(cancellationToken);

            // The outcomes the callers saw.
            var statistics = RunStatistics.From(results, elapsed);
            output.WriteLine();
            output.WriteLine("== Outcomes as the callers saw them");
            output.WriteLine($"   committed {statistics.Committed}, aborted {statistics.Aborted}, rejected {statistics.Rejected}, " +
                             $"in doubt {results.Count(r => r.Outcome?.Status == OrderStatus.InDoubt)}, unavailable {results.Count(r => r.Outcome?.Status == OrderStatus.Unavailable)}, " +
                             $"errors {results.Count(r => r.Outcome is null)} (resubmissions after an exception or Unavailable: {resubmits})");
            foreach (var reason in results.Where(r => r.Outcome?.Status == OrderStatus.Aborted)
                         .GroupBy(r => AbortKind(r.Outcome!.Reason)).OrderByDescending(g => g.Count()))
                output.WriteLine($"   aborted: {reason.Count(),4} x {reason.Key}");
            foreach (var error in results.Where(r => r.Outcome is null).GroupBy(r => r.Error![..Math.Min(100, r.Error!.Length)]).Take(5))
                output.WriteLine($"   error:   {error.Count(),4} x {error.Key}");
            var unsure = results.Where(r => r.Outcome is null || r.Outcome.Status == OrderStatus.InDoubt).ToList();
            if (unsure.Count > 0)
            {
                var shipments = await Task.WhenAll(unsure.Select(r => grains.GetGrain<IShipmentGrain>(r.Order.OrderId).GetSnapshot()));
                var applied = shipments.Count(s => s.Status == "Confirmed");
                output.WriteLine($"   in doubt or failed for the caller, settled by recovery: {applied} applied in all three services, {unsure.Count - applied} in none");
            }
            output.WriteLine($"   {statistics.OrdersPerSecond:0.0} orders/s; latency p50 {statistics.P50.TotalMilliseconds:0.0} ms, p99 {statistics.P99.TotalMilliseconds:0.0} ms (including resubmissions)");
            output.WriteLine(killToQuiescence is { } k
                ? $"   from the SIGKILL to quiescence (nothing prepared, every decision completed): {k.TotalSeconds:0.0} s"
                : "   no silo was killed (the stream ended first)");

            output.WriteLine();
            output.WriteLine("== Reconciliation (committed state read back through the grains)");
            foreach (var line in reconciliation.Lines) output.WriteLine(line);
            foreach (var v in reconciliation.Violations) output.WriteLine($"   VIOLATION {v}");
            var balances = await Task.WhenAll(catalogue.Balances.Keys.Select(a => grains.GetGrain<IPaymentAccountGrain>(a).GetSnapshot()));
            output.WriteLine("  per account: initial -> balance now (charged)");
            foreach (var row in catalogue.Balances.Zip(balances).Chunk(4))
                output.WriteLine("   " + string.Join("  ", row.Select(x =>
                    $"{x.First.Key} {x.First.Value,6} -> {x.Second.Committed,6} ({x.First.Value - x.Second.Committed,5})")));

            output.WriteLine();
            output.WriteLine("== Invariant check (read straight from the four PostgreSQL databases)");
            output.Write(report.ToText());

            var problems = new List<string>();
            if (!reconciliation.Ok) problems.Add($"{reconciliation.Violations.Count} reconciliation violations");
            if (!report.Ok) problems.Add($"{report.Violations.Count} invariant violations");
            if (report.ReachedQuiescence != true) problems.Add("recovery did not reach quiescence within 60 s");
            if (killToQuiescence is null) problems.Add("no silo was killed mid-run");
            output.WriteLine(problems.Count == 0
                ? $"RESULT: OK - {orders.Count} orders across 2 silo processes with one SIGKILLed and replaced: every order all-or-nothing, " +
                  $"stock and money conserved, nothing in doubt ({total.Elapsed.TotalSeconds:0.0} s)"
                : $"RESULT: FAILED - {string.Join("; ", problems)}");
            return problems.Count == 0 ? 0 : 1;
        }
        finally
        {
            if (client is not null)
            {
                try
                {
                    using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                    await client.StopAsync(stop.Token);
                }
                catch
                {
                    // the gateways may be gone already
                }
                client.Dispose();
            }
            foreach (var silo in silos)
            {
                await silo.DisposeAsync();
                Children.TryRemove(silo.Pid, out _);
            }
            if (postgres is not null)
            {
                if (postgres.Source == PostgresSource.Server)
                    await DropDatabasesAsync(postgres.ServerConnectionString!, postgres.Databases, output);
                await postgres.DisposeAsync();
            }
            output.WriteLine($"   cleaned up: {silos.Count} silo processes stopped, " +
                             $"{(postgres?.Source == PostgresSource.Embedded ? "embedded PostgreSQL removed" : "demo databases dropped")}");
        }
    }

    private static async Task WaitActiveOrExplainAsync(ChildSilo silo, TextWriter output, CancellationToken cancellationToken)
    {
        try
        {
            await silo.WaitActiveAsync(TimeSpan.FromSeconds(90), cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            output.WriteLine($"   {silo.Name} (pid {silo.Pid}) failed to start: {ex.Message}; its last output:");
            foreach (var line in silo.LastLines(40)) output.WriteLine($"     | {line}");
            throw;
        }
    }

    private static async Task<IHost> ConnectClientAsync(string clusterId, string coordinatorDatabase, CancellationToken cancellationToken)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.UseOrleansClient(client =>
        {
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = clusterId;
                o.ServiceId = ServiceId;
            });
            client.UseAdoNetClustering(o =>
            {
                o.Invariant = "Npgsql";
                o.ConnectionString = coordinatorDatabase;
            });
            // Refresh the gateway list every second, so a killed silo's gateway is dropped quickly.
            client.Configure<GatewayOptions>(o => o.GatewayListRefreshPeriod = TimeSpan.FromSeconds(1));
            client.Configure<ClientMessagingOptions>(o => o.ResponseTimeout = TimeSpan.FromSeconds(15));
        });
        var host = builder.Build();
        try
        {
            await host.StartAsync(cancellationToken);
            return host;
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    private static async Task DropDatabasesAsync(string adminConnectionString, ServiceDatabases databases, TextWriter output)
    {
        NpgsqlConnection.ClearAllPools();
        var admin = new NpgsqlConnectionStringBuilder(adminConnectionString) { Pooling = false }.ConnectionString;
        foreach (var (_, connectionString) in databases.All)
        {
            var name = PostgresConnectionStrings.DatabaseOf(connectionString);
            if (!DatabaseProvisioner.IsValidName(name)) continue;
            try
            {
                await using var connection = new NpgsqlConnection(admin);
                await connection.OpenAsync();
                await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection);
                await drop.ExecuteNonQueryAsync();
            }
            catch (Exception ex)
            {
                output.WriteLine($"   could not drop database {name}: {ex.Message}");
            }
        }
    }

    private static string AbortKind(string? reason) =>
        reason is null ? "unknown"
        : reason.Contains("insufficient stock") ? "insufficient stock"
        : reason.Contains("insufficient funds") ? "insufficient funds"
        : reason.Contains("timed out") ? "prepare timeout"
        : reason.Contains("presumed abort") ? "presumed abort (the coordinator died before deciding)"
        : reason.Contains("SiloUnavailable") || reason.Contains("failed to prepare") ? "a participant failed to prepare (its silo died)"
        : reason.Length > 120 ? reason[..120] : reason;
}
