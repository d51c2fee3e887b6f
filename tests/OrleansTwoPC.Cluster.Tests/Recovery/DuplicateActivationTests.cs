using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using Orleans.TestingHost;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Storage.Checking;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Cluster.Tests.Recovery;

[Collection(ClusterCollection.Name)]
public sealed class DuplicateActivationTests(TwoPcClusterFixture fixture) : ClusterTestBase(fixture)
{
    /// <summary>
    /// Two activations of one coordinator (as can briefly exist during a membership change): while the
    /// first is collecting votes, the second decides ABORT and writes it. The first then collects all
    /// yes votes, but its COMMIT write is an insert over a record it never saw: refused. It reads the record
    /// and answers the other activation's ABORT, never commits, and recovery makes every service abort.
    /// </summary>
    [Fact]
    public async Task A_stale_coordinator_activation_cannot_overwrite_a_decision()
    {
        var sku = await NewSku(10);
        var account = await NewAccount(5000);
        var order = Order(account, (sku, 2, 300));
        var tx = TransactionIds.FromOrderId(order.OrderId);
        // Keep the first activation in phase one long enough for the "other activation" to decide.
        Fixture.InjectFault($"payment/{account}", tx, ParticipantFault.Hang, TimeSpan.FromMilliseconds(1200));

        var placing = Place(order);
        await Task.Delay(300);
        var silo = (InProcessSiloHandle)Fixture.Cluster.Silos[0];
        var storage = silo.SiloHost.Services.GetRequiredKeyedService<IGrainStorage>("coordinator");
        var other = new CoordinatorRecord
        {
            TransactionId = tx, Decision = Decision.Abort, PresumedAbort = true,
            AbortReason = "decided by another activation", StartedAt = DateTimeOffset.UtcNow,
            DecidedAt = DateTimeOffset.UtcNow, CompletedAt = DateTimeOffset.UtcNow,
        };
        await storage.WriteStateAsync(StateNames.Coordinator, GrainId.Create("transactioncoordinator", tx), new GrainState<CoordinatorRecord>(other));

        var outcome = await placing;

        Assert.Equal(OrderStatus.Aborted, outcome.Status);
        Assert.Equal("decided by another activation", outcome.Reason);
        var stored = (await new StoredStateReader(Fixture.Databases).CoordinatorAsync(tx)).Single().State;
        Assert.Equal(Decision.Abort, stored.Decision);
        Assert.Equal("decided by another activation", stored.AbortReason);

        // The participants voted yes and are in doubt; the recovery sweep makes them ask, and the durable
        // answer is ABORT.
        var report = await new InvariantChecker(Fixture.Databases, new InvariantCheckOptions { Skus = new[] { sku }, Accounts = new[] { account }, OrderIdPrefix = order.OrderId })
            .WaitUntilQuiescentAsync(TimeSpan.FromSeconds(30));
        Assert.True(report.Ok, report.ToText());
        Assert.Equal(10, (await Stock(sku)).Committed);
        Assert.Equal(5000, (await Balance(account)).Committed);
        Assert.NotEqual("Confirmed", (await Shipment(order.OrderId)).Status);
    }
}
