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

/// <summary>How one silo of a nemesis cluster runs.</summary>
/// <param name="Roles">Its service roles (<c>TwoPC:Roles</c>).</param>
/// <param name="ShippedDefaults">Membership, messaging and recovery at the product's defaults instead of the
/// fast detection of the process tests.</param>
/// <param name="Environment">Extra environment of the process (a moved clock).</param>
public sealed record NemesisSilo(string Roles = "all", bool ShippedDefaults = false, IReadOnlyDictionary<string, string>? Environment = null);

/// <summary>What a caller was told about one order.</summary>
public enum NemesisAnswer { Committed, Aborted, Indeterminate, Refused }

public sealed record NemesisOperation(OrderRequest Order, NemesisAnswer Answer, string Detail, DateTimeOffset InvokedAt, DateTimeOffset AnsweredAt);

/// <summary>
/// The harness of the nemesis tests: silo processes in their own network namespaces (<see cref="NetworkLab"/>),
/// PostgreSQL on the lab's bridge, a client in the test's namespace, callers that stream orders and record
/// every answer, a sampler of held reservations, and the final check of the databases against the history.
/// Disposing it resumes paused silos, stops every process and removes the lab, also when a test failed.
/// </summary>
public sealed class NemesisCluster : IAsyncDisposable
{
    private const int SkuCount = 5;
    private const long StockPerSku = 10_000;
    private const int AccountCount = 12;
    private const long BalancePerAccount = 1_000_000;
    private const int DeadStatus = 6;

    private readonly ITestOutputHelper _output;
    private readonly NemesisSilo[] _specs;
    private readonly bool[] _paused;
    private readonly string _siloAdmin;
    private readonly ConcurrentBag<NemesisOperation> _history = new();
    private readonly List<Task> _callers = new();
    private CancellationTokenSource _stopCallers = new();
    private readonly CancellationTokenSource _stopSampling = new();
    private Task _sampling = Task.CompletedTask;
    private bool _passed;

    private NemesisCluster(ITestOutputHelper output, NetworkLab lab, EmbeddedPostgres postgres, NemesisSilo[] specs)
    {
        _output = output;
        _specs = specs;
        Lab = lab;
        Postgres = postgres;
        _siloAdmin = new NpgsqlConnectionStringBuilder(postgres.AdminConnectionString) { Host = lab.GatewayAddress }.ConnectionString;
        Settings = ProcessClusterSettings.Unique(postgres.AdminConnectionString, "nemesis");
        Silos = new ChildSilo?[specs.Length];
        _paused = new bool[specs.Length];
        Run = Guid.NewGuid().ToString("N")[..8];
        Skus = Enumerable.Range(0, SkuCount).Select(i => $"sku-{Run}-{i}").ToList();
        Accounts = Enumerable.Range(0, AccountCount).Select(i => $"acct-{Run}-{i}").ToList();
        Blocking = new BlockingSampler(new StoredStateReader(Settings.Databases));
    }

    public NetworkLab Lab { get; }
    public EmbeddedPostgres Postgres { get; }
    public ProcessClusterSettings Settings { get; }
    public ChildSilo?[] Silos { get; }
    public ProcessClusterClient Client { get; private set; } = null!;
    public IGrainFactory Grains => Client.Grains;
    public string Run { get; }
    public IReadOnlyList<string> Skus { get; }
    public IReadOnlyList<string> Accounts { get; }
    public BlockingSampler Blocking { get; }
    public IReadOnlyList<NemesisOperation> History => _history.ToList();
    public StoredStateReader Reader => new(Settings.Databases);

    /// <summary>Starts the lab, PostgreSQL, the silos (waiting until each is active), the client, and seeds stock and balances.</summary>
    public static async Task<NemesisCluster> StartAsync(ITestOutputHelper output, params NemesisSilo[] silos)
    {
        if (NetworkLab.MissingPrerequisite() is { } missing) Assert.Fail($"the nemesis needs network namespaces: {missing}");
        var lab = NetworkLab.Create(silos.Length);
        EmbeddedPostgres? postgres = null;
        try
        {
            postgres = await StartPostgresFor(lab);
        }
        catch
        {
            lab.Dispose();
            throw;
        }
        var cluster = new NemesisCluster(output, lab, postgres, silos);
        try
        {
            for (var i = 0; i < silos.Length; i++) cluster.Silos[i] = cluster.StartSilo(i);
            foreach (var silo in cluster.Silos) await silo!.WaitActiveAsync(TimeSpan.FromSeconds(120), CancellationToken.None);
            cluster.Client = await ProcessClusterClient.ConnectAsync(cluster.Settings, responseTimeout: TimeSpan.FromSeconds(10));
            foreach (var sku in cluster.Skus) await Retrying(() => cluster.Grains.GetGrain<IInventoryGrain>(sku).SetStock(StockPerSku));
            foreach (var account in cluster.Accounts) await Retrying(() => cluster.Grains.GetGrain<IPaymentAccountGrain>(account).SetBalance(BalancePerAccount));
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts host <paramref name="host"/>'s silo process in its namespace (again, after a kill).</summary>
    public ChildSilo StartSilo(int host, IReadOnlyDictionary<string, string>? environment = null)
    {
        var spec = _specs[host];
        return ChildSilo.Start($"silo-{host}", _siloAdmin, Settings.DatabasePrefix, Settings.ClusterId, ProcessClusterSettings.ServiceId,
            Settings.Databases.Coordinator,
            new Dictionary<string, string> { ["TwoPC:AdvertisedIp"] = Lab.AddressOf(host), ["TwoPC:Roles"] = spec.Roles },
            keptLines: 400, shippedDefaults: spec.ShippedDefaults, networkNamespace: Lab.Namespaces[host],
            environment: environment ?? spec.Environment);
    }

    /// <summary>Stops host <paramref name="host"/>'s silo (if it still runs: SIGTERM, so it leaves the cluster
    /// at once) and starts it again, waiting until it is active.</summary>
    public async Task RestartSiloAsync(int host, IReadOnlyDictionary<string, string>? environment = null)
    {
        if (Silos[host] is { } old)
        {
            try
            {
                await ProcessSignals.SendAsync(old.Pid, "TERM");
                await old.WaitForExitAsync(new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or InvalidOperationException)
            {
                // gone already, or too slow: disposal kills it
            }
            await old.DisposeAsync();
        }
        Silos[host] = StartSilo(host, environment);
        await Silos[host]!.WaitActiveAsync(TimeSpan.FromSeconds(120), CancellationToken.None);
    }

    public async Task PauseAsync(int host)
    {
        await ProcessSignals.SendAsync(Silos[host]!.Pid, "STOP");
        _paused[host] = true;
        Silos[host]!.Note("SIGSTOP");
    }

    public async Task ResumeAsync(int host)
    {
        await ProcessSignals.SendAsync(Silos[host]!.Pid, "CONT");
        _paused[host] = false;
        Silos[host]!.Note("SIGCONT");
    }

    /// <summary>Whether the membership table holds host <paramref name="host"/>'s current incarnation as dead.</summary>
    public async Task<bool> IsDeclaredDeadAsync(int host)
    {
        await using var connection = new NpgsqlConnection(Settings.Databases.Coordinator);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            "SELECT status FROM orleansmembershiptable WHERE deploymentid = @cluster AND address = @address AND port = @port ORDER BY generation DESC LIMIT 1", connection);
        command.Parameters.AddWithValue("cluster", Settings.ClusterId);
        command.Parameters.AddWithValue("address", Lab.AddressOf(host));
        command.Parameters.AddWithValue("port", Silos[host]!.SiloPort);
        return await command.ExecuteScalarAsync() is int status && status == DeadStatus;
    }

    /// <summary>Callers that place orders until <see cref="StopOrdersAsync"/>, each resubmitting an order while its answer is indeterminate.</summary>
    public void StartOrders(int callers, int seed, TimeSpan pause)
    {
        _stopCallers = new CancellationTokenSource();
        var stop = _stopCallers.Token;
        if (_sampling.IsCompleted) _sampling = Blocking.RunAsync(_stopSampling.Token);
        for (var c = 0; c < callers; c++)
        {
            var caller = c;
            _callers.Add(Task.Run(async () =>
            {
                var random = new Random(seed * 31 + caller);
                while (!stop.IsCancellationRequested)
                {
                    var i = Interlocked.Increment(ref _next);
                    var lines = Skus.OrderBy(_ => random.Next()).Take(random.Next(1, 3)).Select(sku => new OrderLine(sku, random.Next(1, 4), 100)).ToList();
                    var order = new OrderRequest($"o-{Run}-{i}", lines, Accounts[random.Next(AccountCount)], $"{i} Nemesis Road");
                    _history.Add(await Place(order));
                    await Task.Delay(pause, CancellationToken.None);
                }
            }));
        }
    }

    private int _next;

    public async Task StopOrdersAsync()
    {
        await _stopCallers.CancelAsync();
        await Task.WhenAll(_callers).WaitAsync(TimeSpan.FromSeconds(120));
        _callers.Clear();
    }

    /// <summary>Places an order, resubmitting it (same id and content) while the answer is indeterminate.</summary>
    public async Task<NemesisOperation> Place(OrderRequest order)
    {
        var invoked = DateTimeOffset.UtcNow;
        (NemesisAnswer Answer, string Detail) last = (NemesisAnswer.Indeterminate, "not answered");
        for (var attempt = 1; attempt <= 4; attempt++)
        {
            try
            {
                var outcome = await Grains.PlaceOrderAsync(order);
                last = outcome.Status switch
                {
                    OrderStatus.Committed => (NemesisAnswer.Committed, ""),
                    OrderStatus.Aborted => (NemesisAnswer.Aborted, outcome.Reason ?? ""),
                    OrderStatus.Rejected or OrderStatus.Unavailable => (NemesisAnswer.Refused, outcome.Reason ?? ""),
                    _ => (NemesisAnswer.Indeterminate, outcome.Reason ?? ""),
                };
                if (last.Answer != NemesisAnswer.Indeterminate) break;
            }
            catch (Exception ex)
            {
                last = (NemesisAnswer.Indeterminate, $"{ex.GetBaseException().GetType().Name}: {TwoPcException.OneLine(ex.GetBaseException().Message)}");
            }
            await Task.Delay(TimeSpan.FromMilliseconds(500 * attempt));
        }
        return new NemesisOperation(order, last.Answer, last.Detail, invoked, DateTimeOffset.UtcNow);
    }

    /// <summary>The fault is over: from now on the sampler times how long what was prepared before stays held.</summary>
    public DateTimeOffset Healed()
    {
        var at = DateTimeOffset.UtcNow;
        Blocking.Healed(at);
        Blocking.FaultStarts("none (after the heal)");
        return at;
    }

    /// <summary>Lets the callers go on for <paramref name="runOn"/> after the heal, stops them and runs <see cref="VerifyAsync"/>.</summary>
    public async Task<TimeSpan> StopAndVerifyAsync(DateTimeOffset healedAt, TimeSpan runOn)
    {
        await Task.Delay(runOn);
        await StopOrdersAsync();
        return await VerifyAsync(healedAt);
    }

    /// <summary>
    /// After the faults: waits until nothing is in doubt, runs the invariant checker and compares every answer
    /// with the databases. Returns how long after <paramref name="healedAt"/> the cluster was quiescent.
    /// </summary>
    public async Task<TimeSpan> VerifyAsync(DateTimeOffset healedAt, TimeSpan? quiescenceTimeout = null)
    {
        var checker = new InvariantChecker(Settings.Databases);
        var report = await checker.WaitUntilQuiescentAsync(quiescenceTimeout ?? TimeSpan.FromSeconds(120));
        var sinceHeal = DateTimeOffset.UtcNow - healedAt;
        _output.WriteLine($"quiescent (nothing prepared, every decision acknowledged): {report.ReachedQuiescence}, at most {sinceHeal.TotalSeconds:0.0} s after the last heal");
        _output.WriteLine(report.ToText());
        Assert.True(report.ReachedQuiescence == true, "transactions still in doubt after the faults stopped");
        Assert.True(report.Ok, report.ToText());
        await AssertHistory();
        return sinceHeal;
    }

    /// <summary>Every answer is what the databases hold: committed everywhere, or applied nowhere.</summary>
    private async Task AssertHistory()
    {
        var reader = Reader;
        var history = History;
        var coordinators = (await reader.CoordinatorsAsync(unfinishedOnly: false)).ToDictionary(c => c.Key, c => c.State);
        var shipments = (await reader.ShipmentsAsync(false)).ToDictionary(c => c.Key, c => c.State);
        _output.WriteLine($"history: {history.Count} orders; {Counts(history)}");
        foreach (var reason in history.Where(o => o.Answer != NemesisAnswer.Committed).GroupBy(o => $"{o.Answer}: {Shorten(o.Detail)}").OrderByDescending(g => g.Count()).Take(6))
            _output.WriteLine($"  {reason.Count()} x {reason.Key}");
        foreach (var operation in history)
        {
            var orderId = operation.Order.OrderId;
            var committed = coordinators.GetValueOrDefault(TransactionIds.FromOrderId(orderId))?.Decision == Decision.Commit;
            var shipped = shipments.GetValueOrDefault(orderId)?.Resource.Status == ShipmentStatus.Confirmed;
            Assert.True(committed == shipped, $"{orderId}: coordinator committed={committed} but shipment confirmed={shipped}");
            switch (operation.Answer)
            {
                case NemesisAnswer.Committed:
                    Assert.True(committed, $"{orderId} was answered Committed but is not committed");
                    break;
                case NemesisAnswer.Aborted or NemesisAnswer.Refused:
                    Assert.False(committed, $"{orderId} was answered {operation.Answer} ({operation.Detail}) but committed");
                    break;
            }
        }
    }

    public static string Counts(IEnumerable<NemesisOperation> operations)
    {
        var counts = operations.GroupBy(o => o.Answer).ToDictionary(g => g.Key, g => g.Count());
        return string.Join(", ", Enum.GetValues<NemesisAnswer>().Select(a => $"{counts.GetValueOrDefault(a)} {a}"));
    }

    /// <summary>A reason with numbers, times and ids replaced, so equal causes group together.</summary>
    public static string Shorten(string reason)
    {
        reason = System.Text.RegularExpressions.Regex.Replace(reason, @"\b(inventory|payment|shipment)/[^\s,;:)]+", "$1/…");
        reason = System.Text.RegularExpressions.Regex.Replace(reason, @"\d{4}-\d\d-\d\dT[0-9:.+]+", "…");
        reason = System.Text.RegularExpressions.Regex.Replace(reason, @"\btx-[^\s,;:)]+", "tx-…");
        return System.Text.RegularExpressions.Regex.Replace(reason, @"\b(requested|available) \d+|\d+ ms\b", m => System.Text.RegularExpressions.Regex.Replace(m.Value, @"\d+", "N"));
    }

    /// <summary>Marks the test as passed, so disposal does not print the silos' last lines.</summary>
    public void Passed() => _passed = true;

    public void PrintSiloLines(int host, int count)
    {
        if (Silos[host] is not { } silo) return;
        _output.WriteLine($"--- {silo.Name} (pid {silo.Pid}), last {count} lines:");
        foreach (var line in silo.LastLines(count)) _output.WriteLine(line);
    }

    public async ValueTask DisposeAsync()
    {
        await _stopCallers.CancelAsync();
        await _stopSampling.CancelAsync();
        await _sampling;
        for (var i = 0; i < Silos.Length; i++)
            if (_paused[i] && Silos[i] is { } paused) await ProcessSignals.SendAsync(paused.Pid, "CONT");
        try
        {
            await Task.WhenAll(_callers).WaitAsync(TimeSpan.FromSeconds(60));
        }
        catch
        {
            // the callers' answers no longer matter
        }
        if (Client is not null) await Client.DisposeAsync();
        for (var i = 0; i < Silos.Length; i++)
        {
            if (Silos[i] is not { } silo) continue;
            if (!_passed) PrintSiloLines(i, 60);
            await silo.DisposeAsync();
        }
        await Postgres.DisposeAsync();
        Lab.Dispose();
    }

    private static async Task<EmbeddedPostgres> StartPostgresFor(NetworkLab lab)
    {
        // Reachable from the lab's namespaces on the bridge address, with trust for that subnet only.
        var hba = Path.Combine(Path.GetTempPath(), $"twopc-nemesis-{Environment.ProcessId}-{lab.Subnet}-pg_hba.conf");
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
            catch (Exception ex) when (attempt < 40 && ex is not Xunit.Sdk.XunitException)
            {
                await Task.Delay(500);
            }
        }
    }
}

/// <summary>Samples the prepared reservations in the three participant databases and keeps the oldest seen.</summary>
public sealed class BlockingSampler(StoredStateReader reader)
{
    private readonly List<(DateTimeOffset At, string Fault)> _faults = [(DateTimeOffset.MinValue, "no fault")];

    public TimeSpan Longest { get; private set; }
    public string LongestWhere { get; private set; } = "none";
    /// <summary>The fault that was running when the longest-held reservation was prepared.</summary>
    public string LongestDuring { get; private set; } = "none";
    private DateTimeOffset _healedAt = DateTimeOffset.MaxValue;

    /// <summary>When a reservation prepared before the last <see cref="Healed"/> was last seen held.</summary>
    public DateTimeOffset? LastHeldFromBeforeHeal { get; private set; }

    /// <summary>From now on, time how long reservations prepared before this moment stay held.</summary>
    public void Healed(DateTimeOffset at)
    {
        _healedAt = at;
        LastHeldFromBeforeHeal = null;
    }

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
                    .Concat((await reader.ShipmentsAsync(true)).SelectMany(r => r.State.Prepared.Select(p => ($"shipment/{r.Key}", p.Value.PreparedAt))))
                    .ToList();
                if (prepared.Any(p => p.PreparedAt < _healedAt)) LastHeldFromBeforeHeal = now;
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
