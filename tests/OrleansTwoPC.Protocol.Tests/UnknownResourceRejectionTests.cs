using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using static OrleansTwoPC.Protocol.Tests.TestSupport;

namespace OrleansTwoPC.Protocol.Tests;

/// <summary>
/// The existence check folded into the prepare: a participant whose SKU or account was never created votes
/// no with <see cref="Refusals.UnknownResource"/>, and the coordinator turns that into a rejection of the
/// order (nothing decided, nothing written, idle again) instead of an abort.
/// </summary>
public sealed class UnknownResourceRejectionTests
{
    private const string Tx = "tx-ORDER-1";
    private static readonly ParticipantId Sku2 = new(ParticipantKind.Inventory, "SKU-2");
    private static readonly ParticipantId[] TwoSkus = { Sku, Sku2, Account, Shipment };

    private static CoordinatorMachine Begun(params ParticipantId[] participants)
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        machine.Begin("fp-1", participants.Length == 0 ? Three : participants, T0);
        return machine;
    }

    [Fact]
    public void AnUnseededCounter_RefusesWithTheUnknownResourceReason()
    {
        var machine = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("insufficient stock"), null, TimeSpan.FromHours(1));

        var vote = machine.Prepare("tx-1", "tx-1", 1, T0.AddSeconds(5), T0);

        Assert.Equal(new PrepareResult(PrepareCase.Refused, Vote.No, Refusals.UnknownResource), vote);
        Assert.False(vote.MustPersist); // an unknown SKU writes nothing: no row is created for it
    }

    [Fact]
    public void UnknownResource_WaitsForEveryVote_ThenRejectsWithoutADecision()
    {
        var machine = Begun();

        Assert.Empty(machine.OnVote(Sku, Vote.No, Refusals.UnknownResource, T0.AddMilliseconds(1)));
        Assert.Equal(CoordinatorPhase.Preparing, machine.Phase);
        Assert.Empty(machine.OnVote(Shipment, Vote.Yes, null, T0.AddMilliseconds(2)));
        var actions = machine.OnVote(Account, Vote.Yes, null, T0.AddMilliseconds(3));

        var rejection = actions.Only<RejectOrder>();
        Assert.Equal("unknown SKU SKU-1", rejection.Reason);
        Assert.Equal(new[] { Account, Shipment }, rejection.RollBack.OrderBy(p => p.Kind));
        Assert.DoesNotContain(actions, a => a is PersistDecision);
        Assert.Equal(CoordinatorPhase.Idle, machine.Phase);
        Assert.False(machine.Record.IsDecided);
        Assert.Empty(machine.Record.Participants);
        // The emptied record still names its transaction: an outcome read now reports the right id.
        Assert.Equal(machine.TransactionId, machine.Record.TransactionId);
        Assert.Equal(machine.TransactionId, machine.Outcome().TransactionId);
    }

    [Fact]
    public void EveryUnknownSku_IsNamed_InLineOrder_BeforeAnUnknownAccount()
    {
        var machine = Begun(TwoSkus);

        machine.OnVote(Account, Vote.No, Refusals.UnknownResource, T0);
        machine.OnVote(Sku2, Vote.No, Refusals.UnknownResource, T0);
        machine.OnVote(Shipment, Vote.Yes, null, T0);
        var rejection = machine.OnVote(Sku, Vote.No, Refusals.UnknownResource, T0).Only<RejectOrder>();

        Assert.Equal("unknown SKU SKU-1, SKU-2", rejection.Reason);
        Assert.Equal(new[] { Shipment }, rejection.RollBack);
    }

    [Fact]
    public void AnUnknownAccount_IsNamed_WhenEverySkuExists()
    {
        var machine = Begun();

        machine.OnVote(Sku, Vote.Yes, null, T0);
        machine.OnVote(Account, Vote.No, Refusals.UnknownResource, T0);
        var rejection = machine.OnVote(Shipment, Vote.Yes, null, T0).Only<RejectOrder>();

        Assert.Equal("unknown account ACC-1", rejection.Reason);
        Assert.Equal(new[] { Sku, Shipment }, rejection.RollBack);
    }

    [Fact]
    public void OtherNoVotesAndFailures_AfterAnUnknownResource_StillReject_AndFailuresAreRolledBack()
    {
        var machine = Begun();

        machine.OnVote(Account, Vote.No, Refusals.UnknownResource, T0);
        Assert.Empty(machine.OnVote(Sku, Vote.No, "insufficient stock: requested 3, available 1", T0));
        var rejection = machine.OnPrepareFailed(Shipment, "TimeoutException: silo unreachable", T0).Only<RejectOrder>();

        Assert.Equal("unknown account ACC-1", rejection.Reason);
        // The failed prepare may have reserved before failing; the refused SKU reserved nothing.
        Assert.Equal(new[] { Shipment }, rejection.RollBack);
    }

    [Fact]
    public void TheDeadline_AfterAnUnknownResource_Rejects_AndRollsBackTheSilentOnes()
    {
        var machine = Begun();
        machine.OnVote(Sku, Vote.No, Refusals.UnknownResource, T0);
        machine.OnVote(Account, Vote.Yes, null, T0);

        var rejection = machine.OnPrepareDeadline(T0.AddSeconds(5)).Only<RejectOrder>();

        Assert.Equal("unknown SKU SKU-1", rejection.Reason);
        Assert.Equal(new[] { Account, Shipment }, rejection.RollBack);
        Assert.Equal(CoordinatorPhase.Idle, machine.Phase);
    }

    [Fact]
    public void ABusinessNo_BeforeAnyUnknownResource_AbortsAsUsual_AndTheLaterUnknownVoteIsIgnored()
    {
        var machine = Begun();

        var abort = machine.OnVote(Account, Vote.No, "insufficient funds: requested 500, available 20", T0);
        Assert.Equal(new PersistDecision(Decision.Abort), abort.Only<PersistDecision>());

        Assert.Empty(machine.OnVote(Sku, Vote.No, Refusals.UnknownResource, T0));
        Assert.Equal(CoordinatorPhase.Deciding, machine.Phase);
        Assert.Contains("insufficient funds", machine.Record.AbortReason);
    }

    [Fact]
    public void AfterARejection_LateVotesAreIgnored_AnInquiryPresumesAbort_AndTheOrderCanBeginAgain()
    {
        var machine = Begun();
        machine.OnVote(Sku, Vote.No, Refusals.UnknownResource, T0);
        machine.OnVote(Account, Vote.Yes, null, T0);
        machine.OnVote(Shipment, Vote.Yes, null, T0).Only<RejectOrder>();

        Assert.Empty(machine.OnVote(Shipment, Vote.Yes, null, T0.AddSeconds(1)));
        Assert.Empty(machine.OnPrepareDeadline(T0.AddSeconds(5)));
        Assert.Equal(CoordinatorPhase.Idle, machine.Phase);

        // A corrected resubmission (the SKU was created meanwhile) is a new attempt with a new deadline.
        var again = machine.Begin("fp-1", Three, T0.AddSeconds(10));
        Assert.Equal(T0.AddSeconds(15), again.OfType<SendPrepare>().First().Deadline);
        foreach (var p in Three) machine.OnVote(p, Vote.Yes, null, T0.AddSeconds(11));
        Assert.Equal(Decision.Commit, machine.Record.Decision);

        // A participant left prepared by the rejected attempt asks: no record, so presumed abort.
        var asked = new CoordinatorMachine(Tx, Options(), null);
        asked.Begin("fp-1", Three, T0);
        asked.OnVote(Sku, Vote.No, Refusals.UnknownResource, T0);
        asked.OnPrepareDeadline(T0.AddSeconds(5)).Only<RejectOrder>();
        var inquiry = asked.OnInquiry(T0.AddSeconds(40));
        Assert.True(inquiry.Pending);
        Assert.Equal(new PersistDecision(Decision.Abort), inquiry.Actions.Only<PersistDecision>());
        Assert.True(asked.Record.PresumedAbort);
    }

    [Fact]
    public void AParticipantRolledBackAfterARejection_RefusesTheRejectedAttemptsLatePrepare()
    {
        var shipment = new ParticipantMachine<ShipmentRecord, ShipmentDetails>(new ShipmentRules(), null, TimeSpan.FromHours(1));
        var details = new ShipmentDetails { OrderId = "ORDER-1", Address = "1 Main St", Items = { new ShipmentItem { Sku = "SKU-1", Quantity = 1 } } };
        var deadline = T0.AddSeconds(5);
        Assert.Equal(PrepareCase.Reserved, shipment.Prepare(Tx, Tx, details, deadline, T0).Case);

        Assert.Equal(DecisionCase.Released, shipment.Rollback(Tx, T0.AddMilliseconds(10)).Case);

        Assert.Equal(PrepareCase.AlreadyAborted, shipment.Prepare(Tx, Tx, details, deadline, T0.AddMilliseconds(20)).Case);
        Assert.Empty(shipment.Record.Prepared);
    }
}
