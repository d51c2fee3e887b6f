using System.Diagnostics;
using Orleans.TestingHost;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Recovery;

/// <summary>
/// The crash-point matrix: the silo hosting the coordinator (or a participant) is killed exactly at one
/// protocol step; recovery (reminder-driven sweep, participant inquiries, presumed abort) must bring every
/// service to one outcome with nothing left reserved or in doubt.
/// </summary>
[Collection(RecoveryCollection.Name)]
public sealed class CrashPointTests(RecoveryClusterFixture fixture, ITestOutputHelper output) : ClusterTestBase(fixture)
{
    /// <summary>From the kill to everything finished (the issue's bound with test settings).</summary>
    private static readonly TimeSpan RecoveryBound = TimeSpan.FromSeconds(30);

    [Theory]
    [InlineData(CrashPoint.CoordinatorBeforeAnyPrepare, false)]
    [InlineData(CrashPoint.CoordinatorAfterSomePreparesSent, false)]
    [InlineData(CrashPoint.CoordinatorAfterVotesBeforeDecision, false)]
    [InlineData(CrashPoint.CoordinatorAfterDecisionBeforePhaseTwo, true)]
    [InlineData(CrashPoint.CoordinatorAfterSomeAcknowledgements, true)]
    public async Task Coordinator_silo_killed_at_a_protocol_step_ends_in_one_outcome_everywhere(CrashPoint point, bool expectCommit)
    {
        await RunCrashScenario(point, participant: null, expectCommit);
    }

    [Theory]
    [InlineData(CrashPoint.ParticipantBeforeVote, "payment", false)]
    [InlineData(CrashPoint.ParticipantAfterPrepareDurable, "inventory", false)]
    [InlineData(CrashPoint.ParticipantAfterDecisionBeforeApply, "shipment", true)]
    public async Task Participant_silo_killed_at_a_protocol_step_ends_in_one_outcome_everywhere(CrashPoint point, string participantKind, bool expectCommit)
    {
        await RunCrashScenario(point, participantKind, expectCommit);
    }

    private async Task RunCrashScenario(CrashPoint point, string? participant, bool expectCommit)
    {
        var sku = await NewSku(20);
        var account = await NewAccount(10_000);
        var order = Order(account, (sku, 3, 250));
        var tx = TransactionIds.FromOrderId(order.OrderId);
        var where = participant switch
        {
            null => "",
            "inventory" => $"inventory/{sku}",
            "payment" => $"payment/{account}",
            _ => $"shipment/{order.OrderId}",
        };
        var injectors = Fixture.CrashInjectors().ToList();
        foreach (var (_, crashes) in injectors) crashes.Arm(point, tx, where);

        var placing = Place(order);
        var fired = await Task.WhenAny(injectors.Select(i => i.Crashes.Reached)).WaitAsync(TimeSpan.FromSeconds(20));
        var report = await fired;
        var victim = injectors.Single(i => i.Crashes.Reached == fired).Silo;
        foreach (var (_, crashes) in injectors) crashes.DisarmAll();
        output.WriteLine($"{report.Point} reached for {report.TransactionId} at {report.Where}; killing {victim.SiloAddress}");

        await Fixture.Cluster.KillSiloAsync(victim);
        var clock = Stopwatch.StartNew();
        try
        {
            // Recovery is measured from the kill, independently of when the caller gives up.
            await AssertFinished(order, sku, account, expectCommit, RecoveryBound);
            output.WriteLine($"all services agree ({(expectCommit ? "committed" : "aborted")}) {clock.Elapsed.TotalSeconds:0.0} s after the kill");
            try
            {
                var early = await placing.WaitAsync(TimeSpan.FromSeconds(30));
                output.WriteLine($"caller was answered: {early.Status} {early.Reason}");
                // Whatever the caller heard must be the outcome everywhere.
                if (early.Status is OrderStatus.Committed or OrderStatus.Aborted)
                    Assert.Equal(expectCommit, early.Status == OrderStatus.Committed);
            }
            catch (Exception ex) when (ex is not Xunit.Sdk.XunitException)
            {
                output.WriteLine($"caller saw the crash: {ex.GetType().Name}: {ex.Message}");
            }
        }
        finally
        {
            await Fixture.Cluster.StartAdditionalSiloAsync();
        }
    }

    /// <summary>
    /// Polls PostgreSQL directly (not through the cluster, whose client may still be routing through the
    /// dead silo's gateway) until all three services show the single expected outcome and nothing is
    /// reserved, prepared or unfinished.
    /// </summary>
    private async Task AssertFinished(OrderRequest order, string sku, string account, bool committed, TimeSpan within)
    {
        var tx = TransactionIds.FromOrderId(order.OrderId);
        var reader = new StoredStateReader(Fixture.Databases);
        var deadline = DateTime.UtcNow + within;
        string state = "";
        while (true)
        {
            var stock = (await reader.InventoryAsync(false, sku)).Single().State;
            var balance = (await reader.PaymentsAsync(false, account)).Single().State;
            var shipment = (await reader.ShipmentsAsync(false, order.OrderId)).SingleOrDefault()?.State;
            var coordinator = (await reader.CoordinatorAsync(tx)).SingleOrDefault()?.State;
            state = $"stock {stock.Resource.Committed} (prepared {stock.Prepared.Count}), balance {balance.Resource.Committed} (prepared {balance.Prepared.Count}), " +
                    $"shipment {shipment?.Resource.Status.ToString() ?? "none"} (prepared {shipment?.Prepared.Count ?? 0}), " +
                    $"coordinator {coordinator?.Decision.ToString() ?? "no record"} completed={coordinator?.IsCompleted}";
            var settled = stock.Prepared.Count == 0 && balance.Prepared.Count == 0 && (shipment?.Prepared.Count ?? 0) == 0
                          && (coordinator is null || coordinator.IsCompleted);
            if (settled)
            {
                output.WriteLine($"final: {state}");
                Assert.Equal(committed ? 17 : 20, stock.Resource.Committed);
                Assert.Equal(committed ? 10_000 - 750 : 10_000, balance.Resource.Committed);
                Assert.Equal(committed, shipment?.Resource.Status == ShipmentStatus.Confirmed);
                Assert.Equal(committed, coordinator?.Decision == Decision.Commit);
                return;
            }
            if (DateTime.UtcNow > deadline) Assert.Fail($"{tx} not finished within the recovery bound: {state}");
            await Task.Delay(250);
        }
    }
}
