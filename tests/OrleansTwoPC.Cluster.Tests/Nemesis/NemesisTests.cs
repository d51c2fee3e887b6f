using System.Collections.Concurrent;
using System.Diagnostics;
using Npgsql;
using OrleansTwoPC.Cluster.Tests.Processes;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Checking;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Nemesis;

/// <summary>
/// Jepsen-style: three silo processes, each in its own network namespace, serve a stream of orders from
/// concurrent callers while a seeded schedule of real faults runs: a silo partitioned from its peers, a
/// silo cut from PostgreSQL only, one direction of a link dropped, a silo paused past the failure timeout
/// and resumed (the zombie), a silo SIGKILLed and restarted. Every order is recorded as invoked and then
/// committed, aborted, indeterminate (in doubt or an exception) or refused; after the faults stop, the
/// databases must agree with every answer and hold nothing in doubt.
/// </summary>
[Collection(SiloProcessCollection.Name)]
public sealed class NemesisTests(ITestOutputHelper output)
{
    private const int Silos = 3;
    private const int Callers = 8;
    private const int SkuCount = 5;
    private const long StockPerSku = 2_000;
    private const int AccountCount = 12;
    private const long BalancePerAccount = 200_000;

    private enum Answer { Committed, Aborted, Indeterminate, Refused }

    private sealed record Operation(OrderRequest Order, Answer Answer, string Detail);

    [Fact]
    public async Task Orders_stay_all_or_nothing_through_partitions_pauses_and_kills()
    {
        if (NetworkLab.MissingPrerequisite() is { } missing)
        {
            Assert.Fail($"the nemesis needs network namespaces: {missing}");
        }
        var seed = int.TryParse(Environment.GetEnvironmentVariable("TWOPC_NEMESIS_SEED"), out var s) ? s : Environment.TickCount & 0xFFFF;
        var faults = int.TryParse(Environment.GetEnvironmentVariable("TWOPC_NEMESIS_FAULTS"), out var f) ? f : 6;
        output.WriteLine($"nemesis seed {seed}, {faults} faults (replay: TWOPC_NEMESIS_SEED={seed} TWOPC_NEMESIS_FAULTS={faults})");
        var random = new Random(seed);

        using var lab = NetworkLab.Create(Silos);
        await using var postgres = await StartPostgresFor(lab);
        var siloAdmin = new NpgsqlConnectionStringBuilder(postgres.AdminConnectionString) { Host = lab.GatewayAddress }.ConnectionString;
        var cluster = ProcessClusterSettings.Unique(postgres.AdminConnectionString, "nemesis");
        var silos = new ChildSilo?[Silos];
        var paused = new bool[Silos];
        ProcessClusterClient? client = null;
        var passed = false;
        try
        {
            for (var i = 0; i < Silos; i++) silos[i] = StartSilo(i);
            foreach (var silo in silos) await silo!.WaitActiveAsync(TimeSpan.FromSeconds(90), CancellationToken.None);
            client = await ProcessClusterClient.ConnectAsync(cluster, responseTimeout: TimeSpan.FromSeconds(10));
            var grains = client.Grains;

            var run = Guid.NewGuid().ToString("N")[..8];
            var skus = Enumerable.Range(0, SkuCount).Select(i => $"sku-{run}-{i}").ToList();
            var accounts = Enumerable.Range(0, AccountCount).Select(i => $"acct-{run}-{i}").ToList();
            foreach (var sku in skus) await Retrying(() => grains.GetGrain<IInventoryGrain>(sku).SetStock(StockPerSku));
            foreach (var account in accounts) await Retrying(() => grains.GetGrain<IPaymentAccountGrain>(account).SetBalance(BalancePerAccount));

            // The callers run until the nemesis is done; each order is resubmitted while its answer is indeterminate.
            var history = new ConcurrentBag<Operation>();
            using var stop = new CancellationTokenSource();
            var next = 0;
            var callers = Enumerable.Range(0, Callers).Select(c => Task.Run(async () =>
            {
                var callerRandom = new Random(seed * 31 + c);
                while (!stop.IsCancellationRequested)
                {
                    var i = Interlocked.Increment(ref next);
                    var lines = skus.OrderBy(_ => callerRandom.Next()).Take(callerRandom.Next(1, 3))
                        .Select(sku => new OrderLine(sku, callerRandom.Next(1, 4), 100)).ToList();
                    var order = new OrderRequest($"o-{run}-{i}", lines, accounts[callerRandom.Next(AccountCount)], $"{i} Nemesis Road");
                    history.Add(await Place(grains, order));
                    await Task.Delay(50);
                }
            })).ToList();

            // How long participants hold reservations: sampled from the databases while the faults run.
            var blocking = new BlockingSampler(new StoredStateReader(cluster.Databases));
            var sampling = blocking.RunAsync(stop.Token);

            var kinds = new[] { "partition", "postgres", "one-way", "pause", "kill", "client" };
            var clock = Stopwatch.StartNew();
            var lastHeal = Stopwatch.StartNew();
            for (var fault = 0; fault < faults; fault++)
            {
                await Task.Delay(TimeSpan.FromSeconds(2));
                var kind = fault < kinds.Length ? kinds[(fault + seed) % kinds.Length] : kinds[random.Next(kinds.Length)];
                var victim = random.Next(Silos);
                var other = (victim + 1 + random.Next(Silos - 1)) % Silos;
                var hold = TimeSpan.FromSeconds(4 + random.Next(4));
                output.WriteLine($"[{clock.Elapsed.TotalSeconds,5:0.0} s] {kind} silo {victim}{(kind == "one-way" ? $" -> silo {other}" : "")} for {hold.TotalSeconds:0} s ({history.Count} orders answered)");
                blocking.FaultStarts($"{kind} silo {victim}");
                switch (kind)
                {
                    case "partition":
                        for (var peer = 0; peer < Silos; peer++) if (peer != victim) lab.Cut(victim, lab.AddressOf(peer));
                        await Task.Delay(hold);
                        lab.Heal(victim);
                        break;
                    case "postgres":
                        lab.CutPort(victim, lab.GatewayAddress, postgres.Port);
                        await Task.Delay(hold);
                        lab.Heal(victim);
                        break;
                    case "one-way":
                        lab.Cut(victim, lab.AddressOf(other), bothWays: false);
                        await Task.Delay(hold);
                        lab.Heal(victim);
                        break;
                    case "pause":
                        // Longer than the failure detection: the cluster declares it dead and re-activates its grains.
                        await ProcessSignals.SendAsync(silos[victim]!.Pid, "STOP");
                        paused[victim] = true;
                        await Task.Delay(hold + TimeSpan.FromSeconds(4));
                        await ProcessSignals.SendAsync(silos[victim]!.Pid, "CONT");
                        paused[victim] = false;
                        break;
                    case "kill":
                        silos[victim]!.Kill();
                        await Task.Delay(hold);
                        await silos[victim]!.DisposeAsync();
                        silos[victim] = StartSilo(victim);
                        break;
                    case "client":
                        // Calls through that gateway get no answer: the callers hear InDoubt and resubmit.
                        lab.CutClient(victim, silos[victim]!.GatewayPort);
                        await Task.Delay(hold);
                        lab.HealClient();
                        break;
                }
                lastHeal.Restart();
                blocking.FaultStarts("no fault (after a heal)");
            }
            output.WriteLine($"[{clock.Elapsed.TotalSeconds,5:0.0} s] faults over; callers stop");
            await stop.CancelAsync();
            await Task.WhenAll(callers).WaitAsync(TimeSpan.FromSeconds(90));
            await sampling;

            var checker = new InvariantChecker(cluster.Databases);
            var report = await checker.WaitUntilQuiescentAsync(TimeSpan.FromSeconds(90));
            output.WriteLine($"quiescent (nothing prepared, every decision acknowledged): {report.ReachedQuiescence}, {lastHeal.Elapsed.TotalSeconds:0.0} s after the last fault was healed (callers stopping included)");
            output.WriteLine($"longest reservation held while the faults ran: {blocking.Longest.TotalSeconds:0.0} s ({blocking.LongestWhere}, prepared during: {blocking.LongestDuring})");
            output.WriteLine(report.ToText());
            Assert.True(report.ReachedQuiescence == true, "transactions still in doubt after the faults stopped");
            Assert.True(report.Ok, report.ToText());
            await AssertHistory(new StoredStateReader(cluster.Databases), history.ToList());
            passed = true;
        }
        finally
        {
            for (var i = 0; i < Silos; i++) if (paused[i] && silos[i] is { } silo) await ProcessSignals.SendAsync(silo.Pid, "CONT");
            if (client is not null) await client.DisposeAsync();
            foreach (var silo in silos)
            {
                if (silo is null) continue;
                if (!passed)
                {
                    output.WriteLine($"--- {silo.Name} (pid {silo.Pid}):");
                    foreach (var line in silo.LastLines(60)) output.WriteLine(line);
                }
                await silo.DisposeAsync();
            }
        }

        ChildSilo StartSilo(int host) => ChildSilo.Start($"silo-{host}", siloAdmin, cluster.DatabasePrefix, cluster.ClusterId, ProcessClusterSettings.ServiceId,
            cluster.Databases.Coordinator, new Dictionary<string, string> { ["TwoPC:AdvertisedIp"] = lab.AddressOf(host) },
            networkNamespace: lab.Namespaces[host]);
    }

    /// <summary>Every answer is what the databases hold: committed everywhere, or applied nowhere; counters conserved.</summary>
    private async Task AssertHistory(StoredStateReader reader, IReadOnlyList<Operation> history)
    {
        var coordinators = (await reader.CoordinatorsAsync(unfinishedOnly: false)).ToDictionary(c => c.Key, c => c.State);
        var shipments = (await reader.ShipmentsAsync(false)).ToDictionary(c => c.Key, c => c.State);
        var counts = history.GroupBy(o => o.Answer).ToDictionary(g => g.Key, g => g.Count());
        output.WriteLine($"history: {history.Count} orders; " + string.Join(", ", Enum.GetValues<Answer>().Select(a => $"{counts.GetValueOrDefault(a)} {a}")));
        foreach (var reason in history.Where(o => o.Answer != Answer.Committed).GroupBy(o => $"{o.Answer}: {Shorten(o.Detail)}").OrderByDescending(g => g.Count()).Take(6))
            output.WriteLine($"  {reason.Count()} x {reason.Key}");
        foreach (var (order, answer, detail) in history)
        {
            var committed = coordinators.GetValueOrDefault(TransactionIds.FromOrderId(order.OrderId))?.Decision == Decision.Commit;
            var shipped = shipments.GetValueOrDefault(order.OrderId)?.Resource.Status == ShipmentStatus.Confirmed;
            Assert.True(committed == shipped, $"{order.OrderId}: coordinator committed={committed} but shipment confirmed={shipped}");
            switch (answer)
            {
                case Answer.Committed:
                    Assert.True(committed, $"{order.OrderId} was answered Committed but is not committed");
                    break;
                case Answer.Aborted or Answer.Refused:
                    Assert.False(committed, $"{order.OrderId} was answered {answer} ({detail}) but committed");
                    break;
            }
        }
        Assert.True(counts.GetValueOrDefault(Answer.Committed) > 0, "no order committed: the run proves nothing");
    }

    /// <summary>Samples the prepared reservations in the three participant databases and keeps the oldest seen.</summary>
    private sealed class BlockingSampler(StoredStateReader reader)
    {
        private readonly List<(DateTimeOffset At, string Fault)> _faults = [(DateTimeOffset.MinValue, "no fault")];

        public TimeSpan Longest { get; private set; }
        public string LongestWhere { get; private set; } = "none";
        /// <summary>The fault that was running when the longest-held reservation was prepared.</summary>
        public string LongestDuring { get; private set; } = "none";

        public void FaultStarts(string fault)
        {
            lock (_faults) _faults.Add((DateTimeOffset.UtcNow, fault));
        }

        private string FaultAt(DateTimeOffset at)
        {
            lock (_faults) return _faults.Last(f => f.At <= at).Fault;
        }

        public async Task RunAsync(CancellationToken stop)
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    var now = DateTimeOffset.UtcNow;
                    var prepared = (await reader.InventoryAsync(true)).SelectMany(r => r.State.Prepared.Select(p => ($"inventory/{r.Key}", p.Value.PreparedAt)))
                        .Concat((await reader.PaymentsAsync(true)).SelectMany(r => r.State.Prepared.Select(p => ($"payment/{r.Key}", p.Value.PreparedAt))))
                        .Concat((await reader.ShipmentsAsync(true)).SelectMany(r => r.State.Prepared.Select(p => ($"shipment/{r.Key}", p.Value.PreparedAt))));
                    foreach (var (where, at) in prepared)
                    {
                        if (now - at <= Longest) continue;
                        Longest = now - at;
                        LongestWhere = where;
                        LongestDuring = FaultAt(at);
                    }
                    await Task.Delay(250, stop);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
                catch (NpgsqlException)
                {
                    // The test's own reads never go through the lab's cuts; a transient error is skipped.
                }
            }
        }
    }

    private static string Shorten(string reason) => System.Text.RegularExpressions.Regex.Replace(reason, @"\b(requested|available) \d+", "$1 N");

    /// <summary>Places an order, resubmitting it (same id and content) while the answer is indeterminate.</summary>
    private static async Task<Operation> Place(IGrainFactory grains, OrderRequest order)
    {
        var last = new Operation(order, Answer.Indeterminate, "not answered");
        for (var attempt = 1; attempt <= 4; attempt++)
        {
            try
            {
                var outcome = await grains.PlaceOrderAsync(order);
                last = outcome.Status switch
                {
                    OrderStatus.Committed => new Operation(order, Answer.Committed, ""),
                    OrderStatus.Aborted => new Operation(order, Answer.Aborted, outcome.Reason ?? ""),
                    OrderStatus.Rejected or OrderStatus.Unavailable => new Operation(order, Answer.Refused, outcome.Reason ?? ""),
                    _ => new Operation(order, Answer.Indeterminate, outcome.Reason ?? ""),
                };
                if (last.Answer != Answer.Indeterminate) return last;
            }
            catch (Exception ex)
            {
                last = new Operation(order, Answer.Indeterminate, $"{ex.GetBaseException().GetType().Name}: {TwoPcException.OneLine(ex.GetBaseException().Message)}");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(500 * attempt));
        }
        return last;
    }

    private static async Task<EmbeddedPostgres> StartPostgresFor(NetworkLab lab)
    {
        // Reachable from the lab's namespaces on the bridge address, with trust for that subnet only.
        var hba = Path.Combine(Path.GetTempPath(), $"twopc-nemesis-{Environment.ProcessId}-pg_hba.conf");
        await File.WriteAllTextAsync(hba, $"local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all {lab.CidrBlock} trust\n");
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(hba, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        var options = new EmbeddedPostgresOptions { MaxConnections = 400 };
        options.ServerSettings["listen_addresses"] = $"'127.0.0.1,{lab.GatewayAddress}'";
        options.ServerSettings["hba_file"] = $"'{hba}'";
        return await EmbeddedPostgres.StartNewAsync(options);
    }

    private static async Task Retrying(Func<Task> call)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await call();
                return;
            }
            catch (Exception ex) when (attempt < 20 && ex is not Xunit.Sdk.XunitException)
            {
                await Task.Delay(500);
            }
        }
    }
}
