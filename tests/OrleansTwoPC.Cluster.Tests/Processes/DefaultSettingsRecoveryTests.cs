using System.Diagnostics;
using Npgsql;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains.Recovery;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Processes;

/// <summary>
/// Recovery as a user's deployment runs it: silo processes with the product's default settings (no tuned
/// membership, sweep or in-doubt timeouts), one SIGKILLed while its coordinators wait for votes.
/// </summary>
[Collection(SiloProcessCollection.Name)]
public sealed class DefaultSettingsRecoveryTests(ITestOutputHelper output)
{
    /// <summary>The issue's bound: from the SIGKILL to nothing in doubt, with default settings.</summary>
    private static readonly TimeSpan RecoveryBound = TimeSpan.FromSeconds(30);

    private const int Orders = 12;

    [Fact]
    public async Task With_default_settings_a_killed_silos_transactions_are_settled_within_30_seconds()
    {
        var server = await SharedPostgres.ServerAsync();
        var cluster = ProcessClusterSettings.Unique(server.AdminConnectionString, "defaults");
        var silos = new List<SiloProcess>();
        ProcessClusterClient? client = null;
        NpgsqlConnection? locker = null;
        var passed = false;
        try
        {
            silos.Add(SiloProcess.Start("silo-A", cluster, shippedDefaults: true));
            silos.Add(SiloProcess.Start("silo-B", cluster, shippedDefaults: true));
            await Task.WhenAll(silos.Select(s => s.WaitActiveAsync(TimeSpan.FromSeconds(90))));
            client = await ProcessClusterClient.ConnectAsync(cluster, responseTimeout: TimeSpan.FromSeconds(30));
            var grains = client.Grains;

            var run = Guid.NewGuid().ToString("N")[..8];
            var sku = $"SKU-{run}";
            var accounts = Enumerable.Range(0, Orders).Select(i => $"acct-{run}-{i}").ToList();
            await grains.GetGrain<IInventoryGrain>(sku).SetStock(1_000);
            foreach (var account in accounts) await grains.GetGrain<IPaymentAccountGrain>(account).SetBalance(10_000);

            // Every account's storage row is locked: its prepare cannot be written, so each coordinator waits for
            // that vote while the SKU and the shipment are already prepared. Coordinators are spread over both silos.
            locker = new NpgsqlConnection(cluster.Databases.Payments);
            await locker.OpenAsync();
            await using (var begin = new NpgsqlCommand("BEGIN; SELECT 1 FROM twopc_grain_state WHERE state_name = @state FOR UPDATE", locker))
            {
                begin.Parameters.AddWithValue("state", OrleansTwoPC.Protocol.StateNames.Payment);
                await begin.ExecuteNonQueryAsync();
            }

            var orders = accounts.Select((a, i) => new OrderRequest($"order-{run}-{i}", [new OrderLine(sku, 1, 100)], a, "1 Default Street")).ToList();
            var placing = orders.Select(o => grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(o.OrderId)).PlaceOrder(o)).ToList();
            var reader = new StoredStateReader(cluster.Databases);
            var preparedShipments = 0;
            for (var waited = Stopwatch.StartNew(); waited.Elapsed < TimeSpan.FromSeconds(4) && preparedShipments < Orders;)
            {
                preparedShipments = (await reader.ShipmentsAsync(true)).Count;
                await Task.Delay(50);
            }
            output.WriteLine($"{preparedShipments} of {Orders} shipments prepared, payments blocked; killing {silos[0].Name} (pid {silos[0].Pid})");
            output.WriteLine($"{placing.Count(p => p.IsCompleted)} of {Orders} callers answered before the kill");

            silos[0].Kill();
            var sinceKill = Stopwatch.StartNew();
            await using (var release = new NpgsqlCommand("ROLLBACK", locker)) await release.ExecuteNonQueryAsync();
            var openAtKill = await Unsettled(reader);
            output.WriteLine($"right after the kill: {openAtKill}");
            Assert.True(openAtKill is not null, "nothing was open when the silo died: the test would prove nothing");

            while (true)
            {
                var open = await Unsettled(reader);
                if (open is null) break;
                if (sinceKill.Elapsed > RecoveryBound + TimeSpan.FromSeconds(30))
                    Assert.Fail($"still unsettled {sinceKill.Elapsed.TotalSeconds:0.0} s after the kill: {open}");
                await Task.Delay(200);
            }
            var recovered = sinceKill.Elapsed;
            output.WriteLine($"killed at {DateTime.UtcNow - recovered:HH:mm:ss.fff} UTC");
            output.WriteLine($"nothing in doubt {recovered.TotalSeconds:0.0} s after the SIGKILL (bound {RecoveryBound.TotalSeconds:0} s)");
            foreach (var call in placing)
            {
                try
                {
                    var outcome = await call.WaitAsync(TimeSpan.FromSeconds(40));
                    output.WriteLine($"  caller: {outcome.OrderId} {outcome.Status}");
                }
                catch (Exception ex)
                {
                    output.WriteLine($"  caller: {ex.GetBaseException().GetType().Name}: {ex.GetBaseException().Message.Split('\n')[0]}");
                }
            }
            foreach (var line in silos[1].Output.Split(Environment.NewLine).Where(l => l.Contains("SiloDeathRecovery", StringComparison.Ordinal)))
                output.WriteLine("  survivor: " + line);
            Assert.True(recovered <= RecoveryBound, $"recovery took {recovered.TotalSeconds:0.0} s with default settings (bound {RecoveryBound.TotalSeconds:0} s)");

            // Nothing was lost or doubled: the checker reads the databases.
            var report = await new OrleansTwoPC.Storage.Checking.InvariantChecker(cluster.Databases).CheckAsync();
            Assert.True(report.Ok, report.ToText());
            passed = true;
        }
        finally
        {
            if (locker is not null) await locker.DisposeAsync();
            if (client is not null) await client.DisposeAsync();
            foreach (var silo in silos) await silo.DisposeAsync();
            if (!passed)
                foreach (var silo in silos)
                {
                    output.WriteLine($"--- {silo.Name} (pid {silo.Pid}{(silo.WasKilled ? ", SIGKILLed" : "")}):");
                    foreach (var line in silo.Output.Split(Environment.NewLine).TakeLast(80)) output.WriteLine(line);
                }
        }
    }

    [Fact]
    public async Task A_changed_sweep_interval_takes_effect_on_the_next_start()
    {
        var server = await SharedPostgres.ServerAsync();
        var cluster = ProcessClusterSettings.Unique(server.AdminConnectionString, "sweep");
        var first = SiloProcess.Start("silo-1", cluster, new Dictionary<string, string> { ["TwoPC:Recovery:SweepInterval"] = "00:05:00" }, shippedDefaults: true);
        try
        {
            await first.WaitActiveAsync(TimeSpan.FromSeconds(90));
            Assert.Equal(TimeSpan.FromMinutes(5), await ReminderPeriod(cluster, expected: TimeSpan.FromMinutes(5)));
            await first.StopGracefullyAsync(TimeSpan.FromSeconds(30));
        }
        finally
        {
            await first.DisposeAsync();
        }
        var second = SiloProcess.Start("silo-2", cluster, new Dictionary<string, string> { ["TwoPC:Recovery:SweepInterval"] = "00:02:00" }, shippedDefaults: true);
        try
        {
            await second.WaitActiveAsync(TimeSpan.FromSeconds(90));
            Assert.Equal(TimeSpan.FromMinutes(2), await ReminderPeriod(cluster, expected: TimeSpan.FromMinutes(2)));
        }
        finally
        {
            await second.DisposeAsync();
        }
    }

    /// <summary>The stored period of the recovery reminder, polled until it is the expected one or 20 s passed.</summary>
    private static async Task<TimeSpan?> ReminderPeriod(ProcessClusterSettings cluster, TimeSpan expected)
    {
        TimeSpan? period = null;
        for (var waited = Stopwatch.StartNew(); waited.Elapsed < TimeSpan.FromSeconds(20); await Task.Delay(200))
        {
            await using var connection = new NpgsqlConnection(cluster.Databases.Coordinator);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT period FROM orleansreminderstable WHERE remindername = @name", connection);
            command.Parameters.AddWithValue("name", RecoveryAgentGrain.ReminderName);
            period = await command.ExecuteScalarAsync() is long ms ? TimeSpan.FromMilliseconds(ms) : null;
            if (period == expected) break;
        }
        return period;
    }

    /// <summary>What is still open in the databases, or null when nothing is prepared and every decision is acknowledged.</summary>
    private static async Task<string?> Unsettled(StoredStateReader reader)
    {
        var prepared = (await reader.InventoryAsync(true)).Sum(r => r.State.Prepared.Count)
                       + (await reader.PaymentsAsync(true)).Sum(r => r.State.Prepared.Count)
                       + (await reader.ShipmentsAsync(true)).Sum(r => r.State.Prepared.Count);
        var open = (await reader.CoordinatorsAsync(unfinishedOnly: true)).Count(c => !c.State.IsCompleted);
        return prepared == 0 && open == 0 ? null : $"{prepared} prepared entries, {open} coordinator records not completed";
    }
}
