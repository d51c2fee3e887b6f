using OrleansTwoPC.Protocol.Coordinator;
using static OrleansTwoPC.Protocol.Tests.TestSupport;

namespace OrleansTwoPC.Protocol.Tests;

/// <summary>Every transition of <see cref="CoordinatorMachine"/>: phase one, decision write, phase two, recovery, inquiries.</summary>
public sealed class CoordinatorMachineTests
{
    private const string Tx = "tx-ORDER-1";
    private static readonly DateTimeOffset Deadline = T0 + TimeSpan.FromSeconds(5);

    private static CoordinatorMachine Begun(params ParticipantId[] participants)
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        machine.Begin("fp-1", participants.Length == 0 ? Three : participants, T0);
        return machine;
    }

    /// <summary>All three voted yes, commit written: phase two in progress.</summary>
    private static CoordinatorMachine Decided(Decision decision = Decision.Commit)
    {
        var machine = Begun();
        if (decision == Decision.Commit)
            foreach (var p in Three) machine.OnVote(p, Vote.Yes, null, T0.AddMilliseconds(10));
        else
            machine.OnVote(Account, Vote.No, "insufficient funds", T0.AddMilliseconds(10));
        Assert.Equal(CoordinatorPhase.Deciding, machine.Phase);
        machine.OnDecisionPersisted();
        Assert.Equal(CoordinatorPhase.Decided, machine.Phase);
        return machine;
    }

    private static CoordinatorRecord DecidedRecord(Decision decision, params ParticipantId[] acknowledged) => new()
    {
        TransactionId = Tx,
        Fingerprint = "fp-1",
        Decision = decision,
        StartedAt = T0,
        DecidedAt = T0.AddSeconds(1),
        Participants = Three.Select(p => new ParticipantEntry
        {
            Participant = p.ToString(),
            Vote = Vote.Yes,
            Source = VoteSource.Voted,
            Acknowledged = acknowledged.Contains(p),
        }).ToList(),
    };

    // ---------------------------------------------------------------- construction

    [Fact]
    public void NewRecords_AreBlank_SoAFieldAStoredRecordLacksReadsAsEmpty()
    {
        var record = new CoordinatorRecord();
        Assert.Equal(("", ""), (record.TransactionId, record.Fingerprint));
        Assert.Equal("", new ParticipantEntry().Participant);
        var order = new OrderSummary();
        Assert.Equal(("", ""), (order.OrderId, order.AccountId));
        Assert.Equal("", new OrderSummaryLine().Sku);
        Assert.Equal("", new Participant.PreparedTransaction<long>().Coordinator);
        var shipment = new Resources.ShipmentDetails();
        Assert.Equal(("", ""), (shipment.OrderId, shipment.Address));
        Assert.Equal("", new Resources.ShipmentItem().Sku);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("   ")]
    public void Constructor_RejectsBlankTransactionId(string? id)
    {
        var ex = Assert.Throws<ArgumentException>(() => new CoordinatorMachine(id!, Options(), null));
        Assert.Equal("transactionId", ex.ParamName);
        Assert.Contains("transaction id is blank", ex.Message);
    }

    [Fact]
    public void Constructor_RejectsARecordOfAnotherTransaction()
    {
        var record = DecidedRecord(Decision.Commit);
        record.TransactionId = "tx-OTHER";
        var ex = Assert.Throws<ArgumentException>(() => new CoordinatorMachine(Tx, Options(), record));
        Assert.Equal("persisted", ex.ParamName);
        Assert.Contains("tx-OTHER", ex.Message);
    }

    [Fact]
    public void Constructor_WithoutRecord_IsIdleWithAnEmptyRecord()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        Assert.Equal(CoordinatorPhase.Idle, machine.Phase);
        Assert.Equal(Tx, machine.TransactionId);
        Assert.Equal(Tx, machine.Record.TransactionId);
        Assert.False(machine.Record.IsDecided);
        Assert.Empty(machine.Record.Participants);
    }

    [Fact]
    public void Constructor_PhaseFollowsThePersistedRecord()
    {
        Assert.Equal(CoordinatorPhase.Decided, new CoordinatorMachine(Tx, Options(), DecidedRecord(Decision.Commit)).Phase);
        Assert.Equal(CoordinatorPhase.Decided, new CoordinatorMachine(Tx, Options(), DecidedRecord(Decision.Abort)).Phase);

        var completed = DecidedRecord(Decision.Commit, Three);
        completed.CompletedAt = T0.AddSeconds(2);
        Assert.Equal(CoordinatorPhase.Completed, new CoordinatorMachine(Tx, Options(), completed).Phase);

        // A record without a decision is never written by the protocol: treated as absent.
        var undecided = DecidedRecord(Decision.None);
        Assert.Equal(CoordinatorPhase.Idle, new CoordinatorMachine(Tx, Options(), undecided).Phase);
    }

    // ---------------------------------------------------------------- begin

    [Fact]
    public void Begin_SendsEveryPrepareInParallelWithOneDeadline_ThenStartsTheTimer_AndWritesNothing()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);

        var actions = machine.Begin("fp-1", Three, T0);

        Assert.Equal(4, actions.Count);
        var prepares = actions.Take(3).Select(a => Assert.IsType<SendPrepare>(a)).ToList();
        Assert.Equal(Three, prepares.Select(p => p.Participant));
        Assert.All(prepares, p => Assert.Equal(Deadline, p.Deadline));
        Assert.Equal(new StartPrepareTimer(Deadline), actions[3]);
        Assert.DoesNotContain(actions, a => a is PersistDecision); // presumed abort: no forced begin record

        Assert.Equal(CoordinatorPhase.Preparing, machine.Phase);
        Assert.Equal("fp-1", machine.Record.Fingerprint);
        Assert.Equal(T0, machine.Record.StartedAt);
        Assert.Equal(Decision.None, machine.Record.Decision);
        Assert.Equal(Three.Select(p => p.ToString()), machine.Record.Participants.Select(p => p.Participant));
        Assert.All(machine.Record.Participants, p =>
        {
            Assert.Equal(VoteSource.Pending, p.Source);
            Assert.Null(p.Vote);
            Assert.False(p.Acknowledged);
        });
    }

    [Fact]
    public void Begin_Twice_Throws()
    {
        var machine = Begun();
        var ex = Assert.Throws<InvalidOperationException>(() => machine.Begin("fp-1", Three, T0));
        Assert.Equal($"transaction {Tx} already begun (phase Preparing)", ex.Message);
        Assert.Equal(CoordinatorPhase.Preparing, machine.Phase);
    }

    [Fact]
    public void Begin_AfterADecision_Throws()
    {
        Assert.Throws<InvalidOperationException>(() => Decided().Begin("fp-1", Three, T0));
        Assert.Throws<InvalidOperationException>(() => new CoordinatorMachine(Tx, Options(), DecidedRecord(Decision.Abort)).Begin("fp-1", Three, T0));
    }

    [Fact]
    public void Begin_WithDuplicateParticipants_Throws()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        var duplicate = new[] { Sku, Account, new ParticipantId(ParticipantKind.Inventory, "SKU-1") };
        var ex = Assert.Throws<ArgumentException>(() => machine.Begin("fp-1", duplicate, T0));
        Assert.Equal("participants", ex.ParamName);
        Assert.Contains("participants must be distinct", ex.Message);
        Assert.Equal(CoordinatorPhase.Idle, machine.Phase);
    }

    [Fact]
    public void Begin_WithNoParticipants_Throws()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        var ex = Assert.Throws<ArgumentException>(() => machine.Begin("fp-1", Array.Empty<ParticipantId>(), T0));
        Assert.Equal("participants", ex.ParamName);
        Assert.Contains("at least one participant", ex.Message);
        Assert.Equal(CoordinatorPhase.Idle, machine.Phase);
    }

    [Fact]
    public void Begin_SameKeyOfDifferentKinds_AreDistinctParticipants()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        var actions = machine.Begin("fp", new[] { new ParticipantId(ParticipantKind.Inventory, "X"), new ParticipantId(ParticipantKind.Payment, "X") }, T0);
        Assert.Equal(2, actions.OfType<SendPrepare>().Count());
    }

    // ---------------------------------------------------------------- votes

    [Theory]
    [InlineData(0, 1, 2)]
    [InlineData(2, 0, 1)]
    [InlineData(1, 2, 0)]
    public void AllYes_PersistsCommit_OnlyAfterTheLastYes(int first, int second, int third)
    {
        var machine = Begun();

        Assert.Empty(machine.OnVote(Three[first], Vote.Yes, null, T0.AddMilliseconds(1)));
        Assert.Empty(machine.OnVote(Three[second], Vote.Yes, null, T0.AddMilliseconds(2)));
        Assert.Equal(CoordinatorPhase.Preparing, machine.Phase);
        Assert.Equal(Decision.None, machine.Record.Decision);

        var actions = machine.OnVote(Three[third], Vote.Yes, null, T0.AddMilliseconds(3));

        Assert.Equal(new PersistDecision(Decision.Commit), actions.Only<PersistDecision>());
        Assert.Equal(CoordinatorPhase.Deciding, machine.Phase);
        Assert.Equal(Decision.Commit, machine.Record.Decision);
        Assert.Null(machine.Record.AbortReason);
        Assert.Equal(T0.AddMilliseconds(3), machine.Record.DecidedAt);
        Assert.All(machine.Record.Participants, p => Assert.Equal((Vote.Yes, VoteSource.Voted), (p.Vote!.Value, p.Source)));
    }

    [Fact]
    public void SingleParticipant_Yes_Commits()
    {
        var machine = Begun(Sku);
        Assert.Equal(new PersistDecision(Decision.Commit), machine.OnVote(Sku, Vote.Yes, null, T0).Only<PersistDecision>());
    }

    [Fact]
    public void DuplicateYes_CountsOnce()
    {
        var machine = Begun();
        Assert.Empty(machine.OnVote(Sku, Vote.Yes, null, T0));
        Assert.Empty(machine.OnVote(Sku, Vote.Yes, null, T0));
        Assert.Empty(machine.OnVote(Account, Vote.Yes, null, T0));
        Assert.Equal(CoordinatorPhase.Preparing, machine.Phase); // shipment has not voted
    }

    [Fact]
    public void VoteOfAnotherAttempt_IsIgnored_AndTheVoteOfThisAttemptCounts()
    {
        // A resubmission after a crash begins a second attempt; the first attempt's yes names its own deadline.
        var machine = new CoordinatorMachine(Tx, Options(), null);
        var later = T0.AddSeconds(7);
        machine.Begin("fp-1", new[] { Sku }, later);
        var thisAttempt = machine.Record.PrepareDeadline!.Value;

        Assert.Empty(machine.OnVote(Sku, Vote.Yes, null, later, deadline: Deadline));
        Assert.Empty(machine.OnVote(Sku, Vote.No, "another attempt", later, deadline: Deadline));
        Assert.Equal(CoordinatorPhase.Preparing, machine.Phase);
        Assert.Equal(VoteSource.Pending, machine.Record.Participants.Single().Source);

        Assert.Equal(new PersistDecision(Decision.Commit), machine.OnVote(Sku, Vote.Yes, null, later, deadline: thisAttempt).Only<PersistDecision>());
    }

    [Fact]
    public void FirstNo_AbortsImmediately_WithoutWaitingForTheOthers()
    {
        var machine = Begun();

        var actions = machine.OnVote(Account, Vote.No, "insufficient funds: requested 500, available 20", T0.AddMilliseconds(5));

        Assert.Equal(new PersistDecision(Decision.Abort), actions.Only<PersistDecision>());
        Assert.Equal(CoordinatorPhase.Deciding, machine.Phase);
        Assert.Equal(Decision.Abort, machine.Record.Decision);
        Assert.Contains("payment/ACC-1", machine.Record.AbortReason);
        Assert.Contains("insufficient funds: requested 500, available 20", machine.Record.AbortReason);
        var account = machine.Record.Participants.Single(p => p.Participant == "payment/ACC-1");
        Assert.Equal((Vote.No, VoteSource.Voted), (account.Vote!.Value, account.Source));
        Assert.All(machine.Record.Participants.Where(p => p != account), p => Assert.Equal(VoteSource.Pending, p.Source));
    }

    [Fact]
    public void NoAfterSomeYes_Aborts()
    {
        var machine = Begun();
        machine.OnVote(Sku, Vote.Yes, null, T0);
        machine.OnVote(Shipment, Vote.Yes, null, T0);
        Assert.Equal(new PersistDecision(Decision.Abort), machine.OnVote(Account, Vote.No, null, T0).Only<PersistDecision>());
        Assert.Contains("no reason given", machine.Record.AbortReason);
    }

    [Fact]
    public void PrepareFailure_CountsAsNo_AndAborts()
    {
        var machine = Begun();
        machine.OnVote(Sku, Vote.Yes, null, T0);

        var actions = machine.OnPrepareFailed(Shipment, "TimeoutException: silo unreachable", T0.AddSeconds(1));

        Assert.Equal(new PersistDecision(Decision.Abort), actions.Only<PersistDecision>());
        Assert.Equal(CoordinatorPhase.Deciding, machine.Phase);
        var shipment = machine.Record.Participants.Single(p => p.Participant == "shipment/ORDER-1");
        Assert.Equal(VoteSource.Failed, shipment.Source);
        Assert.Null(shipment.Vote);
        Assert.Equal("TimeoutException: silo unreachable", shipment.Reason);
        Assert.Contains("failed to prepare", machine.Record.AbortReason);
        Assert.Contains("silo unreachable", machine.Record.AbortReason);
    }

    [Fact]
    public void Deadline_AbortsAtOnce_AndMarksOnlyTheSilentParticipantsTimedOut()
    {
        var machine = Begun();
        machine.OnVote(Sku, Vote.Yes, null, T0.AddSeconds(1));

        var actions = machine.OnPrepareDeadline(Deadline);

        Assert.Equal(new PersistDecision(Decision.Abort), actions.Only<PersistDecision>());
        Assert.Equal(CoordinatorPhase.Deciding, machine.Phase);
        Assert.Equal(Deadline, machine.Record.DecidedAt);
        var entries = machine.Record.Participants.ToDictionary(p => p.Participant);
        Assert.Equal(VoteSource.Voted, entries["inventory/SKU-1"].Source);
        Assert.Equal(VoteSource.TimedOut, entries["payment/ACC-1"].Source);
        Assert.Equal(VoteSource.TimedOut, entries["shipment/ORDER-1"].Source);
        Assert.Equal("no vote within 5000 ms", entries["payment/ACC-1"].Reason);
        Assert.Equal("prepare timed out waiting for payment/ACC-1, shipment/ORDER-1", machine.Record.AbortReason);
        Assert.Contains("payment/ACC-1", machine.Record.AbortReason);
        Assert.Contains("shipment/ORDER-1", machine.Record.AbortReason);
        Assert.DoesNotContain("inventory/SKU-1", machine.Record.AbortReason);
    }

    [Fact]
    public void Deadline_FiringEarly_StillAborts_NeverCommits()
    {
        // A paused host may deliver the timer early; the machine must still only ever abort on it.
        var machine = Begun();
        foreach (var p in Three.Take(2)) machine.OnVote(p, Vote.Yes, null, T0);
        Assert.Equal(new PersistDecision(Decision.Abort), machine.OnPrepareDeadline(T0.AddMilliseconds(1)).Only<PersistDecision>());
        Assert.Empty(machine.OnVote(Shipment, Vote.Yes, null, T0.AddMilliseconds(2)));
        Assert.Equal(Decision.Abort, machine.Record.Decision);
    }

    [Fact]
    public void Deadline_OutsidePreparing_DoesNothing()
    {
        Assert.Empty(new CoordinatorMachine(Tx, Options(), null).OnPrepareDeadline(Deadline));

        var deciding = Begun();
        foreach (var p in Three) deciding.OnVote(p, Vote.Yes, null, T0);
        Assert.Empty(deciding.OnPrepareDeadline(Deadline));
        Assert.Equal(Decision.Commit, deciding.Record.Decision);
        Assert.All(deciding.Record.Participants, p => Assert.Equal(VoteSource.Voted, p.Source));

        var decided = Decided();
        Assert.Empty(decided.OnPrepareDeadline(Deadline));
        Assert.Equal((CoordinatorPhase.Decided, Decision.Commit), (decided.Phase, decided.Record.Decision));
    }

    [Fact]
    public void LateVotes_AfterAnAbort_AreIgnored()
    {
        var machine = Begun();
        machine.OnVote(Account, Vote.No, "no funds", T0);

        Assert.Empty(machine.OnVote(Sku, Vote.Yes, null, T0.AddSeconds(1)));
        Assert.Empty(machine.OnVote(Shipment, Vote.Yes, null, T0.AddSeconds(1)));
        Assert.Empty(machine.OnPrepareFailed(Sku, "late failure", T0.AddSeconds(1)));

        Assert.Equal((CoordinatorPhase.Deciding, Decision.Abort), (machine.Phase, machine.Record.Decision));
        Assert.Contains("no funds", machine.Record.AbortReason);
        var sku = machine.Record.Participants.Single(p => p.Participant == "inventory/SKU-1");
        Assert.Null(sku.Vote);
        Assert.Null(sku.Reason);
        Assert.Equal(VoteSource.Pending, sku.Source);
    }

    [Fact]
    public void LateOrDuplicateVotes_AfterACommit_AreIgnored()
    {
        var machine = Begun();
        foreach (var p in Three) machine.OnVote(p, Vote.Yes, null, T0);

        Assert.Empty(machine.OnVote(Sku, Vote.No, "changed my mind", T0));
        Assert.Empty(machine.OnPrepareFailed(Account, "late failure", T0));
        Assert.Equal(Decision.Commit, machine.Record.Decision);

        machine.OnDecisionPersisted();
        Assert.Empty(machine.OnVote(Sku, Vote.No, "changed my mind", T0));
        Assert.Equal((CoordinatorPhase.Decided, Decision.Commit), (machine.Phase, machine.Record.Decision));
        Assert.All(machine.Record.Participants, p => Assert.Equal(Vote.Yes, p.Vote));
    }

    [Fact]
    public void ContradictingVote_FromAParticipantThatAlreadyVoted_IsIgnored()
    {
        var machine = Begun();
        machine.OnVote(Sku, Vote.Yes, null, T0);
        Assert.Empty(machine.OnVote(Sku, Vote.No, "stale", T0));
        Assert.Empty(machine.OnPrepareFailed(Sku, "stale", T0));
        Assert.Equal(CoordinatorPhase.Preparing, machine.Phase);
    }

    [Fact]
    public void VotesFromUnknownParticipants_AreIgnored()
    {
        var machine = Begun();
        var stranger = new ParticipantId(ParticipantKind.Inventory, "SKU-9");
        Assert.Empty(machine.OnVote(stranger, Vote.No, "who am I", T0));
        Assert.Empty(machine.OnPrepareFailed(stranger, "who am I", T0));
        Assert.Equal(CoordinatorPhase.Preparing, machine.Phase);
    }

    [Fact]
    public void VotesBeforeBegin_AreIgnored()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        Assert.Empty(machine.OnVote(Sku, Vote.Yes, null, T0));
        Assert.Empty(machine.OnPrepareFailed(Sku, "x", T0));
        Assert.Equal(CoordinatorPhase.Idle, machine.Phase);
    }

    // ---------------------------------------------------------------- decision write

    [Fact]
    public void NothingIsSent_WhileTheDecisionWriteIsInFlight()
    {
        var machine = Begun();
        foreach (var p in Three) machine.OnVote(p, Vote.Yes, null, T0);
        Assert.Equal(CoordinatorPhase.Deciding, machine.Phase);

        Assert.Empty(machine.Resume(T0));
        Assert.Empty(machine.OnDecisionAcknowledged(Sku, T0));
        Assert.Empty(machine.OnDecisionDeliveryFailed(Sku, 1));
        var inquiry = machine.OnInquiry(T0);
        Assert.True(inquiry.Pending);
        Assert.Empty(inquiry.Actions);
        Assert.Equal(CoordinatorPhase.Deciding, machine.Phase);
    }

    [Fact]
    public void AfterCommitPersisted_RepliesToTheClient_ThenSendsTheDecisionToEveryParticipant()
    {
        var machine = Begun();
        foreach (var p in Three) machine.OnVote(p, Vote.Yes, null, T0.AddMilliseconds(7));

        var actions = machine.OnDecisionPersisted();

        Assert.Equal(CoordinatorPhase.Decided, machine.Phase);
        Assert.Equal(4, actions.Count);
        var reply = Assert.IsType<ReplyToClient>(actions[0]);
        Assert.Equal(Tx, reply.Outcome.TransactionId);
        Assert.Equal(Decision.Commit, reply.Outcome.Decision);
        Assert.Null(reply.Outcome.AbortReason);
        Assert.Equal(Three.Select(p => p.ToString()), reply.Outcome.Votes.Select(v => v.Participant));
        Assert.All(reply.Outcome.Votes, v => Assert.Equal((Vote.Yes, VoteSource.Voted), (v.Vote!.Value, v.Source)));
        Assert.Equal(
            Three.Select(p => new SendDecision(p, Decision.Commit, 1, TimeSpan.Zero)),
            actions.Skip(1).Select(a => Assert.IsType<SendDecision>(a)));
    }

    [Fact]
    public void AfterAbortPersisted_RepliesAbort_AndSendsRollbackToEveryone_IncludingTheNoVoterAndTheSilent()
    {
        var machine = Begun();
        machine.OnVote(Sku, Vote.Yes, null, T0);
        machine.OnVote(Account, Vote.No, "insufficient funds", T0);

        var actions = machine.OnDecisionPersisted();

        var reply = Assert.IsType<ReplyToClient>(actions[0]);
        Assert.Equal(Decision.Abort, reply.Outcome.Decision);
        Assert.Contains("insufficient funds", reply.Outcome.AbortReason);
        Assert.Equal("insufficient funds", reply.Outcome.Votes.Single(v => v.Participant == "payment/ACC-1").Reason);
        Assert.Equal(
            Three.Select(p => new SendDecision(p, Decision.Abort, 1, TimeSpan.Zero)),
            actions.Skip(1).Select(a => Assert.IsType<SendDecision>(a)));
    }

    [Fact]
    public void DecisionPersisted_WithoutAWriteInFlight_Throws()
    {
        Assert.Throws<InvalidOperationException>(() => new CoordinatorMachine(Tx, Options(), null).OnDecisionPersisted());
        Assert.Throws<InvalidOperationException>(() => Begun().OnDecisionPersisted());
        Assert.Throws<InvalidOperationException>(() => Decided().OnDecisionPersisted());
        Assert.Throws<InvalidOperationException>(() => Begun().OnDecisionPersistFailed());
        Assert.Throws<InvalidOperationException>(() => Decided().OnDecisionPersistFailed());
        // The message names the phase the host got wrong.
        Assert.Equal("no decision write in flight (phase Preparing)", Assert.Throws<InvalidOperationException>(() => Begun().OnDecisionPersisted()).Message);
        Assert.Equal("no decision write in flight (phase Decided)", Assert.Throws<InvalidOperationException>(() => Decided().OnDecisionPersistFailed()).Message);
    }

    [Fact]
    public void DecisionWriteFailure_LeavesTheCoordinatorInDoubt_AndNothingIsSentOrAnswered()
    {
        var machine = Begun();
        foreach (var p in Three) machine.OnVote(p, Vote.Yes, null, T0);

        machine.OnDecisionPersistFailed();

        Assert.Equal(CoordinatorPhase.InDoubt, machine.Phase);
        Assert.Empty(machine.Resume(T0));
        Assert.Empty(machine.OnDecisionAcknowledged(Sku, T0));
        Assert.Empty(machine.OnDecisionDeliveryFailed(Sku, 1));
        Assert.Empty(machine.OnVote(Sku, Vote.Yes, null, T0));
        Assert.Empty(machine.OnPrepareDeadline(Deadline));
        var inquiry = machine.OnInquiry(T0);
        Assert.True(inquiry.Pending);  // not "commit", not a presumed abort: the host must reload
        Assert.Empty(inquiry.Actions);
        Assert.Throws<InvalidOperationException>(() => machine.OnDecisionPersisted());
        Assert.Throws<InvalidOperationException>(() => machine.Begin("fp-1", Three, T0));
        Assert.Equal(CoordinatorPhase.InDoubt, machine.Phase);
    }

    // ---------------------------------------------------------------- phase two

    [Fact]
    public void Acknowledgements_PersistCompletion_OnlyAfterTheLastOne()
    {
        var machine = Decided();
        var last = T0.AddSeconds(3);

        Assert.Empty(machine.OnDecisionAcknowledged(Shipment, T0.AddSeconds(1)));
        Assert.Empty(machine.OnDecisionAcknowledged(Shipment, T0.AddSeconds(1))); // duplicate
        Assert.Empty(machine.OnDecisionAcknowledged(Sku, T0.AddSeconds(2)));
        Assert.Equal(CoordinatorPhase.Decided, machine.Phase);
        Assert.Null(machine.Record.CompletedAt);

        Assert.IsType<PersistCompletion>(machine.OnDecisionAcknowledged(Account, last).Only<PersistCompletion>());
        Assert.Equal(CoordinatorPhase.Completing, machine.Phase);
        Assert.Equal(last, machine.Record.CompletedAt);
        Assert.All(machine.Record.Participants, p => Assert.True(p.Acknowledged));

        Assert.Empty(machine.OnDecisionAcknowledged(Account, last)); // late duplicate while completing
        machine.OnCompletionPersisted();
        Assert.Equal(CoordinatorPhase.Completed, machine.Phase);
        Assert.Empty(machine.OnDecisionAcknowledged(Account, last));
    }

    [Fact]
    public void AbortDecision_AlsoCompletesOnlyWhenEveryoneAcknowledged()
    {
        var machine = Decided(Decision.Abort);
        Assert.Empty(machine.OnDecisionAcknowledged(Sku, T0));
        Assert.Empty(machine.OnDecisionAcknowledged(Account, T0));
        Assert.IsType<PersistCompletion>(machine.OnDecisionAcknowledged(Shipment, T0).Only<PersistCompletion>());
    }

    [Fact]
    public void AcknowledgementFromAnUnknownParticipant_IsIgnored()
    {
        var machine = Decided();
        Assert.Empty(machine.OnDecisionAcknowledged(new ParticipantId(ParticipantKind.Inventory, "SKU-9"), T0));
        Assert.All(machine.Record.Participants, p => Assert.False(p.Acknowledged));
    }

    [Fact]
    public void DeliveryFailure_RetriesWithCappedExponentialBackoff()
    {
        var machine = Decided();
        var expectedMs = new[] { 100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000 };

        for (var attempt = 1; attempt <= expectedMs.Length; attempt++)
        {
            var retry = machine.OnDecisionDeliveryFailed(Account, attempt).Only<SendDecision>();
            Assert.Equal(new SendDecision(Account, Decision.Commit, attempt + 1, TimeSpan.FromMilliseconds(expectedMs[attempt - 1])), retry);
        }
        Assert.Equal(TimeSpan.FromSeconds(10), machine.OnDecisionDeliveryFailed(Account, 1000).Only<SendDecision>().Delay);
        Assert.Equal(CoordinatorPhase.Decided, machine.Phase);
    }

    [Fact]
    public void DeliveryFailure_OfAnAbort_RetriesTheAbort()
    {
        var machine = Decided(Decision.Abort);
        Assert.Equal(new SendDecision(Sku, Decision.Abort, 2, TimeSpan.FromMilliseconds(100)), machine.OnDecisionDeliveryFailed(Sku, 1).Only<SendDecision>());
    }

    [Fact]
    public void DeliveryFailure_AfterTheAcknowledgement_OrForAStranger_IsNotRetried()
    {
        var machine = Decided();
        machine.OnDecisionAcknowledged(Sku, T0);
        Assert.Empty(machine.OnDecisionDeliveryFailed(Sku, 3));
        Assert.Empty(machine.OnDecisionDeliveryFailed(new ParticipantId(ParticipantKind.Payment, "nobody"), 1));
    }

    [Fact]
    public void DeliveryFailure_WhenCompletingOrCompleted_IsNotRetried()
    {
        var machine = Decided();
        machine.OnDecisionAcknowledged(Sku, T0);
        machine.OnDecisionAcknowledged(Account, T0);
        machine.OnDecisionAcknowledged(Shipment, T0);
        Assert.Empty(machine.OnDecisionDeliveryFailed(Sku, 1));
        machine.OnCompletionPersisted();
        Assert.Empty(machine.OnDecisionDeliveryFailed(Sku, 1));
    }

    [Fact]
    public void CompletionWriteFailure_GoesBackToDecided_WithTheDecisionIntact()
    {
        var machine = Decided();
        foreach (var p in Three) machine.OnDecisionAcknowledged(p, T0.AddSeconds(1));
        Assert.Equal(CoordinatorPhase.Completing, machine.Phase);

        machine.OnCompletionPersistFailed();

        Assert.Equal(CoordinatorPhase.Decided, machine.Phase);
        Assert.Null(machine.Record.CompletedAt);
        Assert.False(machine.Record.IsCompleted);
        Assert.Equal(Decision.Commit, machine.Record.Decision);
        var inquiry = machine.OnInquiry(T0.AddSeconds(2));
        Assert.Equal(Decision.Commit, inquiry.Decision);
        Assert.Empty(inquiry.Actions);
    }

    [Fact]
    public void CompletionResults_OutsideCompleting_AreIgnored()
    {
        var decided = Decided();
        decided.OnCompletionPersisted();
        decided.OnCompletionPersistFailed();
        Assert.Equal(CoordinatorPhase.Decided, decided.Phase);

        var preparing = Begun();
        preparing.OnCompletionPersisted();
        preparing.OnCompletionPersistFailed();
        Assert.Equal(CoordinatorPhase.Preparing, preparing.Phase);
    }

    /// <summary>
    /// BUG (CoordinatorMachine.OnCompletionPersistFailed / Resume): after a failed completion write the live
    /// machine is back in Decided with every participant already acknowledged. From there no input leads to
    /// completion: Resume() only re-sends to unacknowledged participants (none), acknowledgements are
    /// ignored as duplicates, delivery failures are ignored. The record stays "decided, not completed"
    /// until the host throws the machine away and reloads it.
    /// Expected: Resume() (documented as "after a restart (or a reminder tick)") leads to a new
    /// PersistCompletion, directly or after re-sending the decision.
    /// </summary>
    [Fact]
    public void Resume_AfterACompletionWriteFailure_FinishesTheTransaction()
    {
        var machine = Decided();
        foreach (var p in Three) machine.OnDecisionAcknowledged(p, T0.AddSeconds(1));
        machine.OnCompletionPersistFailed();

        var actions = machine.Resume(T0.AddSeconds(2)).ToList();
        // Whatever the machine chooses (retry the write, or re-send and collect acknowledgements again),
        // following its instructions must reach a completion write.
        foreach (var send in actions.OfType<SendDecision>().ToList())
            actions.AddRange(machine.OnDecisionAcknowledged(send.Participant, T0.AddSeconds(2)));

        Assert.True(actions.OfType<PersistCompletion>().Any(),
            $"Resume() after a failed completion write returned [{string.Join(", ", actions)}] in phase {machine.Phase}; the transaction can never complete on this machine");
        machine.OnCompletionPersisted();
        Assert.Equal(CoordinatorPhase.Completed, machine.Phase);
    }

    // ---------------------------------------------------------------- recovery

    [Fact]
    public void Resume_FromAPersistedDecidedRecord_ResendsOnlyToTheUnacknowledged()
    {
        var machine = new CoordinatorMachine(Tx, Options(), Durable(DecidedRecord(Decision.Commit, Account)));

        var actions = machine.Resume(T0);

        Assert.Equal(CoordinatorPhase.Decided, machine.Phase);
        Assert.Equal(
            new[] { new SendDecision(Sku, Decision.Commit, 1, TimeSpan.Zero), new SendDecision(Shipment, Decision.Commit, 1, TimeSpan.Zero) },
            actions.Select(a => Assert.IsType<SendDecision>(a)));
        Assert.DoesNotContain(actions, a => a is ReplyToClient);

        Assert.Empty(machine.OnDecisionAcknowledged(Sku, T0));
        Assert.IsType<PersistCompletion>(machine.OnDecisionAcknowledged(Shipment, T0).Only<PersistCompletion>());
    }

    [Fact]
    public void Resume_FromAPersistedAbort_ResendsTheAbort()
    {
        var machine = new CoordinatorMachine(Tx, Options(), Durable(DecidedRecord(Decision.Abort)));
        Assert.Equal(Three.Select(p => new SendDecision(p, Decision.Abort, 1, TimeSpan.Zero)), machine.Resume(T0).Select(a => Assert.IsType<SendDecision>(a)));
    }

    [Fact]
    public void Resume_AfterACrashMidPhaseTwo_OnTheRecordAsWritten_ResendsToEveryone()
    {
        // The decision write happened with no acknowledgements; acknowledgements are not written one by one.
        var live = Begun();
        foreach (var p in Three) live.OnVote(p, Vote.Yes, null, T0);
        var written = Durable(live.Record);
        live.OnDecisionPersisted();
        live.OnDecisionAcknowledged(Sku, T0);

        var recovered = new CoordinatorMachine(Tx, Options(), written);

        Assert.Equal(Three.Select(p => new SendDecision(p, Decision.Commit, 1, TimeSpan.Zero)), recovered.Resume(T0).Select(a => Assert.IsType<SendDecision>(a)));
        Assert.Equal(written.DecidedAt, recovered.Record.DecidedAt);
        Assert.Equal("fp-1", recovered.Record.Fingerprint);
    }

    [Fact]
    public void Resume_FromACompletedRecord_DoesNothing()
    {
        var record = DecidedRecord(Decision.Commit, Three);
        record.CompletedAt = T0.AddSeconds(5);
        var machine = new CoordinatorMachine(Tx, Options(), Durable(record));

        Assert.Empty(machine.Resume(T0));
        Assert.Equal(CoordinatorPhase.Completed, machine.Phase);
        Assert.Empty(machine.OnDecisionAcknowledged(Sku, T0));
        Assert.Empty(machine.OnDecisionDeliveryFailed(Sku, 1));
        Assert.Equal(Decision.Commit, machine.OnInquiry(T0).Decision);
    }

    [Fact]
    public void Resume_WhileCompleting_RetriesTheCompletionWrite()
    {
        var machine = Decided();
        foreach (var p in Three) machine.OnDecisionAcknowledged(p, T0);
        Assert.IsType<PersistCompletion>(machine.Resume(T0).Only<PersistCompletion>());
    }

    [Fact]
    public void Resume_BeforeAnyDecision_DoesNothing()
    {
        Assert.Empty(new CoordinatorMachine(Tx, Options(), null).Resume(T0));
        Assert.Empty(Begun().Resume(T0));
    }

    // ---------------------------------------------------------------- inquiries and presumed abort

    [Fact]
    public void Inquiry_AboutAnUnknownTransaction_PresumesAbort_AndMakesItDurableFirst()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);

        var result = machine.OnInquiry(T0);

        Assert.True(result.Pending); // the abort is only an answer once it is durable
        Assert.Equal(Decision.None, result.Decision);
        Assert.Equal(new PersistDecision(Decision.Abort), result.Actions.Only<PersistDecision>());
        Assert.Equal(CoordinatorPhase.Deciding, machine.Phase);
        Assert.True(machine.Record.PresumedAbort);
        Assert.Equal(Decision.Abort, machine.Record.Decision);
        Assert.Contains("presumed abort", machine.Record.AbortReason);
        Assert.Empty(machine.Record.Participants);

        // Asked again while the write is in flight: still pending, no second write.
        var again = machine.OnInquiry(T0);
        Assert.True(again.Pending);
        Assert.Empty(again.Actions);

        var afterWrite = machine.OnDecisionPersisted();
        Assert.Empty(afterWrite); // no ReplyToClient: nobody placed this order here; nobody to send to
        // Written already complete (one write): there is nobody to tell.
        Assert.Equal(CoordinatorPhase.Completed, machine.Phase);
        Assert.NotNull(machine.Record.CompletedAt);

        var answered = machine.OnInquiry(T0.AddSeconds(1));
        Assert.False(answered.Pending);
        Assert.Equal(Decision.Abort, answered.Decision);
        Assert.Empty(answered.Actions);
    }

    [Fact]
    public void AfterPresumedAbort_TheTransactionCanNeverBeginOrCommit()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        machine.OnInquiry(T0);

        // While the presumed abort is being written ...
        Assert.Throws<InvalidOperationException>(() => machine.Begin("fp-1", Three, T0));
        machine.OnDecisionPersisted();
        // ... after it is durable ...
        Assert.Throws<InvalidOperationException>(() => machine.Begin("fp-1", Three, T0));
        foreach (var p in Three) Assert.Empty(machine.OnVote(p, Vote.Yes, null, T0));
        Assert.Equal(Decision.Abort, machine.Record.Decision);

        // ... and after a restart from the durable record.
        var recovered = new CoordinatorMachine(Tx, Options(), Durable(machine.Record));
        Assert.Equal(CoordinatorPhase.Completed, recovered.Phase);
        Assert.True(recovered.Record.PresumedAbort);
        Assert.Throws<InvalidOperationException>(() => recovered.Begin("fp-1", Three, T0));
        foreach (var p in Three) Assert.Empty(recovered.OnVote(p, Vote.Yes, null, T0));
        // Resuming may at most write the completion marker: nothing is sent, nobody is told anything.
        var resumed = recovered.Resume(T0);
        Assert.All(resumed, a => Assert.IsType<PersistCompletion>(a));
        if (resumed.Count > 0) recovered.OnCompletionPersisted();
        Assert.Equal(Decision.Abort, recovered.Record.Decision);
        Assert.Throws<InvalidOperationException>(() => recovered.Begin("fp-1", Three, T0));
        Assert.Equal(Decision.Abort, recovered.OnInquiry(T0).Decision);
    }

    [Fact]
    public void PresumedAbortWriteFailure_LeavesTheCoordinatorInDoubt()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        machine.OnInquiry(T0);
        machine.OnDecisionPersistFailed();
        Assert.Equal(CoordinatorPhase.InDoubt, machine.Phase);
        Assert.True(machine.OnInquiry(T0).Pending);
        Assert.Throws<InvalidOperationException>(() => machine.Begin("fp-1", Three, T0));
    }

    [Fact]
    public void Inquiry_WhilePreparing_IsPending_AndChangesNothing()
    {
        var machine = Begun();
        machine.OnVote(Sku, Vote.Yes, null, T0);

        var result = machine.OnInquiry(T0.AddSeconds(1));

        Assert.True(result.Pending);
        Assert.Empty(result.Actions);
        Assert.Equal(CoordinatorPhase.Preparing, machine.Phase);
        Assert.False(machine.Record.PresumedAbort);
        // The transaction can still commit.
        machine.OnVote(Account, Vote.Yes, null, T0);
        Assert.Equal(new PersistDecision(Decision.Commit), machine.OnVote(Shipment, Vote.Yes, null, T0).Only<PersistDecision>());
    }

    [Theory]
    [InlineData(Decision.Commit)]
    [InlineData(Decision.Abort)]
    public void Inquiry_AfterTheDecision_ReturnsTheDecision(Decision decision)
    {
        var machine = Decided(decision);
        var result = machine.OnInquiry(T0.AddSeconds(1));
        Assert.False(result.Pending);
        Assert.Equal(decision, result.Decision);
        Assert.Empty(result.Actions);

        foreach (var p in Three) machine.OnDecisionAcknowledged(p, T0);
        Assert.Equal(CoordinatorPhase.Completing, machine.Phase);
        Assert.Equal(decision, machine.OnInquiry(T0).Decision);
        machine.OnCompletionPersisted();
        Assert.Equal(decision, machine.OnInquiry(T0).Decision);
    }

    [Fact]
    public void Inquiry_AfterARestartWithADurableCommit_AnswersCommit_NotPresumedAbort()
    {
        var machine = new CoordinatorMachine(Tx, Options(), Durable(DecidedRecord(Decision.Commit)));
        var result = machine.OnInquiry(T0);
        Assert.Equal(Decision.Commit, result.Decision);
        Assert.Empty(result.Actions);
        Assert.False(machine.Record.PresumedAbort);
    }

    [Fact]
    public void Outcome_ReportsEveryVoteAndTheReason()
    {
        var machine = Begun();
        machine.OnVote(Sku, Vote.Yes, null, T0);
        machine.OnPrepareDeadline(Deadline);
        var outcome = machine.Outcome();
        Assert.Equal(Decision.Abort, outcome.Decision);
        Assert.Equal(
            new[] { ("inventory/SKU-1", VoteSource.Voted), ("payment/ACC-1", VoteSource.TimedOut), ("shipment/ORDER-1", VoteSource.TimedOut) },
            outcome.Votes.Select(v => (v.Participant, v.Source)));
    }

    [Fact]
    public void DurableRecord_RoundTripsThroughJson()
    {
        var machine = Decided(Decision.Abort);
        var copy = Durable(machine.Record);
        Assert.Equal(machine.Record.Decision, copy.Decision);
        Assert.Equal(machine.Record.AbortReason, copy.AbortReason);
        Assert.Equal(machine.Record.DecidedAt, copy.DecidedAt);
        Assert.Equal(
            machine.Record.Participants.Select(p => (p.Participant, p.Vote, p.Source, p.Reason, p.Acknowledged)),
            copy.Participants.Select(p => (p.Participant, p.Vote, p.Source, p.Reason, p.Acknowledged)));
        Assert.Equal(Three, copy.Participants.Select(p => p.Id));
    }

    // ---------------------------------------------------------------- attempts: the prepare deadline

    [Fact]
    public void Begin_RecordsThePrepareDeadline_ThatEveryPrepareCarries()
    {
        var options = Options();
        options.PrepareTimeout = TimeSpan.FromSeconds(3);
        var machine = new CoordinatorMachine(Tx, options, null);
        Assert.Null(machine.Record.PrepareDeadline);
        var begun = T0.AddMinutes(7);

        var actions = machine.Begin("fp-1", Three, begun);

        Assert.Equal(begun + TimeSpan.FromSeconds(3), machine.Record.PrepareDeadline);
        Assert.All(actions.OfType<SendPrepare>(), p => Assert.Equal(machine.Record.PrepareDeadline, p.Deadline));
        Assert.Equal(machine.Record.PrepareDeadline, actions.OfType<StartPrepareTimer>().Single().Deadline);
    }

    [Fact]
    public void PrepareDeadline_IsWrittenWithTheDecision_AndSurvivesARestart()
    {
        var machine = Begun();
        foreach (var p in Three) machine.OnVote(p, Vote.Yes, null, T0);
        var written = Durable(machine.Record);
        Assert.Equal(Deadline, written.PrepareDeadline);

        var recovered = new CoordinatorMachine(Tx, Options(), written);
        Assert.Equal(Deadline, recovered.Record.PrepareDeadline);
        Assert.Equal(Decision.Commit, recovered.OnInquiry(T0.AddMinutes(1)).Decision);
    }

    [Fact]
    public void PresumedAbort_NamesNoAttempt()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        machine.OnInquiry(T0);
        Assert.Null(machine.Record.PrepareDeadline);
        Assert.False(machine.Record.Heuristic);
    }

    [Fact]
    public void ADuplicateActivation_BeginsAnotherAttempt_WithALaterDeadline()
    {
        var first = Begun();
        var duplicate = new CoordinatorMachine(Tx, Options(), null);

        var actions = duplicate.Begin("fp-1", Three, T0.AddSeconds(2));

        Assert.Equal(T0.AddSeconds(7), duplicate.Record.PrepareDeadline);
        Assert.NotEqual(first.Record.PrepareDeadline, duplicate.Record.PrepareDeadline);
        Assert.All(actions.OfType<SendPrepare>(), p => Assert.Equal(T0.AddSeconds(7), p.Deadline));
    }

    // ---------------------------------------------------------------- heuristic abort

    [Fact]
    public void HeuristicAbort_OfAnUnknownTransaction_WritesACompletedAbort_AndTellsNobody()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        var at = T0.AddMinutes(3);

        var actions = machine.HeuristicAbort("stuck order, customer called", at);

        Assert.Equal(new PersistDecision(Decision.Abort), actions.Only<PersistDecision>());
        Assert.Equal(CoordinatorPhase.Deciding, machine.Phase);
        Assert.Equal(Decision.Abort, machine.Record.Decision);
        Assert.True(machine.Record.PresumedAbort);
        Assert.True(machine.Record.Heuristic);
        Assert.Contains("heuristic", machine.Record.AbortReason);
        Assert.Contains("stuck order, customer called", machine.Record.AbortReason);
        Assert.Equal(at, machine.Record.CompletedAt);
        Assert.Equal(at, machine.Record.DecidedAt);
        Assert.Empty(machine.Record.Participants);

        Assert.Empty(machine.OnDecisionPersisted());
        Assert.Equal(CoordinatorPhase.Completed, machine.Phase);

        // Durable: the id can never begin or commit afterwards, and inquiries hear abort.
        Assert.Throws<InvalidOperationException>(() => machine.Begin("fp-1", Three, at));
        Assert.Equal(Decision.Abort, machine.OnInquiry(at).Decision);
        var recovered = new CoordinatorMachine(Tx, Options(), Durable(machine.Record));
        Assert.Equal(CoordinatorPhase.Completed, recovered.Phase);
        Assert.True(recovered.Record.Heuristic);
        Assert.Empty(recovered.Resume(at));
        Assert.Throws<InvalidOperationException>(() => recovered.Begin("fp-1", Three, at));
    }

    [Fact]
    public void HeuristicAbort_WriteFailure_LeavesTheCoordinatorInDoubt()
    {
        var machine = new CoordinatorMachine(Tx, Options(), null);
        machine.HeuristicAbort("ops", T0);
        machine.OnDecisionPersistFailed();
        Assert.Equal(CoordinatorPhase.InDoubt, machine.Phase);
        Assert.Throws<InvalidOperationException>(() => machine.HeuristicAbort("again", T0));
    }

    [Fact]
    public void HeuristicAbort_OfAnAbortedTransaction_DoesNothing()
    {
        var decided = Decided(Decision.Abort);
        var reason = decided.Record.AbortReason;
        Assert.Empty(decided.HeuristicAbort("ops", T0.AddSeconds(1)));
        Assert.Equal((CoordinatorPhase.Decided, Decision.Abort, reason, false), (decided.Phase, decided.Record.Decision, decided.Record.AbortReason, decided.Record.Heuristic));

        var completed = DecidedRecord(Decision.Abort, Three);
        completed.CompletedAt = T0.AddSeconds(2);
        var fromRecord = new CoordinatorMachine(Tx, Options(), completed);
        Assert.Empty(fromRecord.HeuristicAbort("ops", T0.AddSeconds(3)));
        Assert.Equal(CoordinatorPhase.Completed, fromRecord.Phase);
        Assert.False(fromRecord.Record.Heuristic);

        var presumed = new CoordinatorMachine(Tx, Options(), null);
        presumed.OnInquiry(T0);
        presumed.OnDecisionPersisted();
        Assert.Empty(presumed.HeuristicAbort("ops", T0.AddSeconds(1)));
        Assert.False(presumed.Record.Heuristic);

        var completing = Decided(Decision.Abort);
        foreach (var p in Three) completing.OnDecisionAcknowledged(p, T0);
        Assert.Equal(CoordinatorPhase.Completing, completing.Phase);
        Assert.Empty(completing.HeuristicAbort("ops", T0));
    }

    [Fact]
    public void HeuristicAbort_OfACommittedTransaction_Throws()
    {
        var decided = Decided(Decision.Commit);
        var ex = Assert.Throws<InvalidOperationException>(() => decided.HeuristicAbort("ops", T0.AddSeconds(1)));
        Assert.Contains("committed", ex.Message);
        Assert.Equal((CoordinatorPhase.Decided, Decision.Commit, false), (decided.Phase, decided.Record.Decision, decided.Record.Heuristic));

        var completed = DecidedRecord(Decision.Commit, Three);
        completed.CompletedAt = T0.AddSeconds(2);
        var fromRecord = new CoordinatorMachine(Tx, Options(), completed);
        Assert.Throws<InvalidOperationException>(() => fromRecord.HeuristicAbort("ops", T0.AddSeconds(3)));
        Assert.Equal(Decision.Commit, fromRecord.Record.Decision);

        var completing = Decided(Decision.Commit);
        foreach (var p in Three) completing.OnDecisionAcknowledged(p, T0);
        Assert.Throws<InvalidOperationException>(() => completing.HeuristicAbort("ops", T0));
        Assert.Equal(CoordinatorPhase.Completing, completing.Phase);
    }

    [Fact]
    public void HeuristicAbort_WhilePreparing_Throws_AndTheTransactionCanStillCommit()
    {
        var machine = Begun();
        machine.OnVote(Sku, Vote.Yes, null, T0);

        var ex = Assert.Throws<InvalidOperationException>(() => machine.HeuristicAbort("ops", T0.AddSeconds(1)));

        Assert.Contains("Preparing", ex.Message);
        Assert.Equal(CoordinatorPhase.Preparing, machine.Phase);
        Assert.False(machine.Record.Heuristic);
        Assert.False(machine.Record.PresumedAbort);
        Assert.Equal(Decision.None, machine.Record.Decision);
        machine.OnVote(Account, Vote.Yes, null, T0);
        Assert.Equal(new PersistDecision(Decision.Commit), machine.OnVote(Shipment, Vote.Yes, null, T0).Only<PersistDecision>());
    }

    [Fact]
    public void HeuristicAbort_WhileDecidingOrInDoubt_Throws()
    {
        var deciding = Begun();
        foreach (var p in Three) deciding.OnVote(p, Vote.Yes, null, T0);
        Assert.Throws<InvalidOperationException>(() => deciding.HeuristicAbort("ops", T0));
        Assert.Equal((CoordinatorPhase.Deciding, Decision.Commit), (deciding.Phase, deciding.Record.Decision));

        deciding.OnDecisionPersistFailed();
        Assert.Throws<InvalidOperationException>(() => deciding.HeuristicAbort("ops", T0));
        Assert.Equal(CoordinatorPhase.InDoubt, deciding.Phase);
    }

    // ---------------------------------------------------------------- recovery of a missing completion

    [Fact]
    public void Resume_OfADecidedRecord_EveryoneAcknowledged_ButNotCompleted_WritesTheCompletion()
    {
        var machine = new CoordinatorMachine(Tx, Options(), Durable(DecidedRecord(Decision.Commit, Three)));
        Assert.Equal(CoordinatorPhase.Decided, machine.Phase);
        var at = T0.AddMinutes(1);

        var actions = machine.Resume(at);

        Assert.IsType<PersistCompletion>(actions.Only<PersistCompletion>());
        Assert.Equal(CoordinatorPhase.Completing, machine.Phase);
        Assert.Equal(at, machine.Record.CompletedAt);
        machine.OnCompletionPersisted();
        Assert.Equal(CoordinatorPhase.Completed, machine.Phase);
        Assert.Empty(machine.Resume(at.AddSeconds(1)));
    }

    [Fact]
    public void Resume_OfADecidedAbort_EveryoneAcknowledged_WritesTheCompletion_AndSendsNothing()
    {
        var machine = new CoordinatorMachine(Tx, Options(), Durable(DecidedRecord(Decision.Abort, Three)));
        var actions = machine.Resume(T0);
        Assert.IsType<PersistCompletion>(actions.Only<PersistCompletion>());
        Assert.DoesNotContain(actions, a => a is SendDecision);
    }

    [Fact]
    public void Resume_CompletionWriteFailsAgain_ResumeRetriesIt()
    {
        var machine = new CoordinatorMachine(Tx, Options(), Durable(DecidedRecord(Decision.Commit, Three)));
        machine.Resume(T0);
        machine.OnCompletionPersistFailed();
        Assert.Equal((CoordinatorPhase.Decided, (DateTimeOffset?)null), (machine.Phase, machine.Record.CompletedAt));

        Assert.IsType<PersistCompletion>(machine.Resume(T0.AddSeconds(5)).Only<PersistCompletion>());
        Assert.Equal(T0.AddSeconds(5), machine.Record.CompletedAt);
    }
}
