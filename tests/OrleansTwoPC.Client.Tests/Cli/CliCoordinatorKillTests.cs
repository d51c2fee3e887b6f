using System.Diagnostics;
using Npgsql;
using OrleansTwoPC.Abstractions;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Storage;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// The silo running an order's coordinator is SIGKILLed while the order is in its prepare phase, everything
/// with the shipped default settings: the caller (a real <c>tpc order</c> process, and an Orleans client in
/// the library path) still hears within 10 s, and <c>tpc</c> says the order is in doubt and that placing it
/// again settles it; placing it again once a coordinator silo runs does settle it.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class CliCoordinatorKillTests(PostgresFixture postgres, ITestOutputHelper log)
{
    private static readonly TimeSpan AnswerBound = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task A_caller_whose_coordinator_silo_is_SIGKILLed_mid_order_is_answered_within_10_s_with_default_settings()
    {
        var unique = Guid.NewGuid().ToString("N")[..10];
        var prefix = $"k_{unique}";
        var clusterId = $"kill-{unique}";
        var admin = postgres.AdminConnectionString;
        var databases = PostgresTopology.DeriveDatabases(admin, prefix);
        string[] cluster = [$"--ConnectionStrings:PostgresServer={admin}", $"--TwoPC:DatabasePrefix={prefix}", $"--TwoPC:ClusterId={clusterId}"];
        var silos = new List<DefaultSettingsSilo>();
        try
        {
            // The coordinator service alone on one silo (the victim), the participants on another.
            var coordinator = DefaultSettingsSilo.Start("coordinator", admin, prefix, clusterId, "coordinator");
            silos.Add(coordinator);
            await coordinator.WaitActiveAsync(TimeSpan.FromSeconds(90));
            var services = DefaultSettingsSilo.Start("services", admin, prefix, clusterId, "inventory,payment,shipping");
            silos.Add(services);
            await services.WaitActiveAsync(TimeSpan.FromSeconds(90));

            var skus = new[] { $"sku-{unique}-a", $"sku-{unique}-b" };
            var account = $"acct-{unique}";
            await Run(0, ["seed", "--sku", $"{skus[0]}=100", "--sku", $"{skus[1]}=100", "--account", $"{account}=100000", .. cluster]);
            await using var client = await LibraryClient.ConnectAsync(databases.Coordinator, clusterId);

            // The inventory database hangs: a lock held here blocks every write of a SKU's state, so each
            // order waits in its prepare phase (up to the 5 s prepare timeout) when its coordinator dies.
            await using var locker = new NpgsqlConnection(databases.Inventory);
            await locker.OpenAsync();
            await using var hold = await locker.BeginTransactionAsync();
            await using (var lockTable = new NpgsqlCommand("LOCK TABLE twopc_grain_state IN ACCESS EXCLUSIVE MODE", locker, hold))
            {
                await lockTable.ExecuteNonQueryAsync();
            }

            var orderId = $"o-{unique}";
            string[] order = ["order", "--id", orderId, "--account", account, "--address", "1 Main St", "--line", $"{skus[0]}:1:100", .. cluster];
            // The library order starts once the tpc order (a process that takes a while to start) waits too.
            var tpcOrder = Tpc.RunAsync(order);
            await WaitForPreparedShipment(databases, orderId, TimeSpan.FromSeconds(30));
            var libraryOrderRequest = new OrderRequest($"lib-{unique}", [new OrderLine(skus[1], 1, 100)], account, "1 Main St");
            var libraryOrder = Timed(() => client.Grains.PlaceOrderAsync(libraryOrderRequest));
            await WaitForPreparedShipment(databases, libraryOrderRequest.OrderId, TimeSpan.FromSeconds(5));
            await WaitForBlockedWrites(databases.Inventory, 1, TimeSpan.FromSeconds(3));

            coordinator.Kill();
            var sinceKill = Stopwatch.StartNew();
            log.WriteLine($"coordinator silo SIGKILLed at {DateTime.UtcNow:HH:mm:ss.fff} with both orders waiting for their inventory prepare");
            var tpcResult = await tpcOrder;
            var tpcAnswered = sinceKill.Elapsed;
            var (libraryElapsed, libraryOutcome, libraryError) = await libraryOrder;
            var libraryAnswered = sinceKill.Elapsed;
            await hold.RollbackAsync();

            log.WriteLine($"tpc order: answered {tpcAnswered.TotalSeconds:0.0} s after the kill ({tpcResult.Elapsed.TotalSeconds:0.0} s in all):{Environment.NewLine}{tpcResult}");
            log.WriteLine($"library call: answered {libraryAnswered.TotalSeconds:0.0} s after the kill ({libraryElapsed.TotalSeconds:0.0} s in all): " +
                          (libraryError is null ? $"{libraryOutcome!.Status} {libraryOutcome.Reason}" : $"{libraryError.GetType().Name}: {libraryError.Message.Split('\n')[0]}"));

            Assert.True(tpcAnswered < AnswerBound, $"tpc answered {tpcAnswered.TotalSeconds:0.0} s after the kill");
            Assert.True(libraryAnswered < AnswerBound, $"the library call answered {libraryAnswered.TotalSeconds:0.0} s after the kill");
            Assert.Equal(1, tpcResult.ExitCode);
            Assert.Contains($"order {orderId} (tx-{orderId}): InDoubt", tpcResult.Out);
            Assert.Contains("placing the same order again", tpcResult.Out);
            Assert.Equal("", tpcResult.Error);
            // The library's PlaceOrderAsync turns the lost answer into an in-doubt outcome that says what to do.
            Assert.True(libraryError is null, $"library call threw {libraryError}");
            Assert.Equal(OrderStatus.InDoubt, libraryOutcome!.Status);
            Assert.Contains("placing the same order again", libraryOutcome.Reason);

            // Placing the same order again settles it once a coordinator silo runs.
            var replacement = DefaultSettingsSilo.Start("replacement", admin, prefix, clusterId, "coordinator");
            silos.Add(replacement);
            await replacement.WaitActiveAsync(TimeSpan.FromSeconds(90));
            var settled = Stopwatch.StartNew();
            TpcResult again;
            do
            {
                again = await Tpc.RunAsync(order);
                log.WriteLine($"resubmitted after {settled.Elapsed.TotalSeconds:0.0} s: exit {again.ExitCode}, {again.Out.Split('\n')[0]}");
            }
            while (!again.Out.Contains(": Committed", StringComparison.Ordinal) && !again.Out.Contains(": Aborted", StringComparison.Ordinal)
                   && settled.Elapsed < TimeSpan.FromSeconds(120));
            Assert.True(again.Out.Contains(": Committed", StringComparison.Ordinal) || again.Out.Contains(": Aborted", StringComparison.Ordinal), again.ToString());
        }
        catch
        {
            foreach (var silo in silos) log.WriteLine($"--- {silo.Name}:{Environment.NewLine}{silo.Output}");
            throw;
        }
        finally
        {
            foreach (var silo in silos) await silo.DisposeAsync();
        }
    }

    private async Task Run(int exitCode, string[] arguments)
    {
        var result = await Tpc.RunAsync(arguments);
        Assert.True(result.ExitCode == exitCode, $"tpc {arguments[0]}: {result}");
    }

    /// <summary>
    /// Waits until the order's shipment is durably prepared: its coordinator has sent the prepares, and the shipping
    /// database is not held, so the order now waits for its inventory vote. (The inventory writes of both orders
    /// share the batched writer's one statement in flight, so blocked statements cannot tell the orders apart.)
    /// </summary>
    private static async Task WaitForPreparedShipment(ServiceDatabases databases, string orderId, TimeSpan timeout)
    {
        var reader = new OrleansTwoPC.Storage.Records.StoredStateReader(databases);
        var deadline = DateTime.UtcNow + timeout;
        while ((await reader.ShipmentsAsync(withPreparedOnly: true, orderId)).Count == 0)
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"the shipment of {orderId} was not prepared within {timeout.TotalSeconds:0} s");
            await Task.Delay(100);
        }
    }

    /// <summary>Waits until <paramref name="count"/> statements in the database wait for a lock.</summary>
    private static async Task WaitForBlockedWrites(string database, int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        while (true)
        {
            await using var command = new NpgsqlCommand(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'", connection);
            if ((long)(await command.ExecuteScalarAsync())! >= count) return;
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"fewer than {count} writes blocked within {timeout.TotalSeconds:0} s");
            await Task.Delay(100);
        }
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
}
