using OrleansTwoPC.Cluster.Tests.Infrastructure;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Processes;

/// <summary>
/// A real silo process and an ordinary Orleans client in another process: the client cannot prepare, commit,
/// roll back or resolve on a participant (it gets an error it can read), while orders and the admin
/// operations work for it as before.
/// </summary>
[Collection(SiloProcessCollection.Name)]
public sealed class ClusterOnlyProcessTests(ITestOutputHelper output)
{
    [Fact]
    public async Task An_external_client_process_is_refused_participant_protocol_calls_but_not_orders_or_admin()
    {
        var server = await SharedPostgres.ServerAsync();
        var cluster = ProcessClusterSettings.Unique(server.AdminConnectionString, "clusteronly");
        await using var silo = SiloProcess.Start("silo-A", cluster);
        await silo.WaitActiveAsync(TimeSpan.FromSeconds(90));
        await using var client = await ProcessClusterClient.ConnectAsync(cluster, responseTimeout: TimeSpan.FromSeconds(10));
        var grains = client.Grains;
        var run = Guid.NewGuid().ToString("N")[..10];
        var sku = $"SKU-{run}";
        var account = $"acct-{run}";
        await grains.GetGrain<IInventoryGrain>(sku).SetStock(10);
        await grains.GetGrain<IPaymentAccountGrain>(account).SetBalance(1_000);
        var tx = TransactionIds.FromOrderId($"forged-{run}");
        var deadline = DateTimeOffset.UtcNow.AddSeconds(3);

        var calls = new (string Name, Func<Task> Call)[]
        {
            ("inventory prepare", () => grains.GetGrain<IInventoryGrain>(sku).Prepare(tx, 3, deadline)),
            ("payment prepare", () => grains.GetGrain<IPaymentAccountGrain>(account).Prepare(tx, 300, deadline)),
            ("shipment prepare", () => grains.GetGrain<IShipmentGrain>($"forged-{run}").Prepare(tx, new ShipmentRequest("1 Forged St", [new OrderLine(sku, 3, 100)]), deadline)),
            ("commit", () => grains.GetGrain<IInventoryGrain>(sku).Commit(tx, deadline)),
            ("rollback", () => grains.GetGrain<IPaymentAccountGrain>(account).Rollback(tx)),
            ("resolve", () => grains.GetGrain<IShipmentGrain>($"forged-{run}").ResolveInDoubt(TimeSpan.Zero)),
        };
        foreach (var (name, call) in calls)
        {
            var error = await Assert.ThrowsAsync<UnauthorizedAccessException>(call);
            output.WriteLine($"{name}: {error.GetType().Name}: {error.Message}");
            Assert.Contains("only from inside the cluster", error.Message);
        }

        var stock = await grains.GetGrain<IInventoryGrain>(sku).GetSnapshot();
        Assert.Equal((10L, 0L), (stock.Committed, stock.Reserved));
        Assert.Equal("Unknown", await grains.GetGrain<IPaymentAccountGrain>(account).GetTransactionStatus(tx));
        var order = new OrderRequest($"order-{run}", [new OrderLine(sku, 3, 100)], account, "1 Real St");
        var outcome = await grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(order.OrderId)).PlaceOrder(order);
        Assert.Equal(OrderStatus.Committed, outcome.Status);
    }
}
