using Orleans.TestingHost;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Recovery;

/// <summary>
/// A prepare that arrives after its transaction was rolled back must be refused even when the participant's silo
/// died in between: the rollback's tombstone is durable, and the SKU's new activation on another silo reads it before
/// it answers the prepare.
/// </summary>
[Collection(RecoveryCollection.Name)]
public sealed class LatePrepareAfterKillTests(RecoveryClusterFixture fixture, ITestOutputHelper output) : ClusterTestBase(fixture)
{
    [Fact]
    public async Task A_late_prepare_after_a_rollback_is_refused_after_the_participants_silo_was_killed()
    {
        // The silo whose grain factory the test uses (InsideCluster): it must stay up.
        var primary = Fixture.Cluster.Silos.OfType<InProcessSiloHandle>().First().SiloAddress;
        var management = Fixture.InsideCluster.GetGrain<IManagementGrain>(0);
        // A SKU activated on another silo.
        string sku = "";
        SiloAddress? host = null;
        for (var attempt = 0; attempt < 20 && (host is null || host.Equals(primary)); attempt++)
        {
            sku = await NewSku(10);
            host = await HostOf(sku);
        }
        Assert.NotNull(host);
        Assert.NotEqual(primary, host);
        var tx = TransactionIds.FromOrderId(Unique("late"));
        var deadline = DateTimeOffset.UtcNow + TwoPcClusterFixture.PrepareTimeout * 2;
        var grain = Fixture.InsideCluster.GetGrain<IInventoryGrain>(sku);

        await grain.Rollback(tx); // nothing prepared: the rollback is remembered, durably, as a tombstone
        var victim = Fixture.Cluster.Silos.Single(s => s.SiloAddress.Equals(host));
        output.WriteLine($"{sku} on {host}: rolled back {tx}, killing its silo");
        await Fixture.Cluster.KillSiloAsync(victim);
        try
        {
            VoteReply? vote = null;
            await Retrying(async () => vote = await grain.Prepare(tx, 2, deadline));
            var snapshot = await grain.GetSnapshot();
            var newHost = await HostOf(sku);
            output.WriteLine($"late prepare on {newHost}: {(vote!.Yes ? "yes" : "no")} ({vote.Reason}); stock {snapshot.Committed}, {snapshot.OpenReservations} reserved");

            Assert.NotEqual(host, newHost);
            Assert.False(vote.Yes, "a prepare after its rollback was accepted by the new activation");
            Assert.Contains("rolled back", vote.Reason, StringComparison.Ordinal);
            Assert.Equal((10L, 0), (snapshot.Committed, snapshot.OpenReservations));
            Assert.Equal("Aborted", await grain.GetTransactionStatus(tx));
        }
        finally
        {
            await Fixture.Cluster.StartAdditionalSiloAsync();
        }

        async Task<SiloAddress> HostOf(string key) =>
            (await management.GetDetailedGrainStatistics()).Single(s => s.GrainId.Key.ToString() == key && s.GrainType.Contains("Inventory", StringComparison.Ordinal)).SiloAddress;
    }
}
