using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using static OrleansTwoPC.Protocol.Tests.TestSupport;

namespace OrleansTwoPC.Protocol.Tests;

/// <summary>
/// Attempts of one transaction (named by their prepare deadline), commit and inquiry answers per attempt,
/// tombstones kept until the deadline has passed, and the duplicate-coordinator-activation scenario these
/// exist for. Escrow counter of 10 units unless said otherwise.
/// </summary>
public sealed class AttemptAndRecoveryTests
{
    private const string T1 = "tx-1";
    private const string Coordinator = "tx-1";

    /// <summary>The first attempt's deadline.</summary>
    private static readonly DateTimeOffset D1 = T0.AddSeconds(5);

    /// <summary>A second attempt of the same transaction (a duplicate coordinator activation began later).</summary>
    private static readonly DateTimeOffset D2 = T0.AddSeconds(7);

    private static long Available(ParticipantMachine<EscrowCounter, long> m) => EscrowRules.Available(m.Record.Resource, m.ReservedWork);

    private static (long Committed, long Consumed) Counts(ParticipantMachine<EscrowCounter, long> m) => (m.Record.Resource.Committed, m.Record.Resource.ConsumedTotal);

    private static ParticipantMachine<EscrowCounter, long> PreparedD1(long amount = 3)
    {
        var machine = Counter(10);
        Assert.Equal(PrepareCase.Reserved, machine.Prepare(T1, Coordinator, amount, D1, T0).Case);
        return machine;
    }

    // ---------------------------------------------------------------- the deadline names the attempt

    [Fact]
    public void Prepare_StoresTheCoordinatorsDeadline()
    {
        var machine = PreparedD1();
        Assert.Equal(D1, machine.Record.Prepared[T1].Deadline);

        var restarted = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("x"), Durable(machine.Record), TimeSpan.FromHours(1));
        Assert.Equal(D1, restarted.Record.Prepared[T1].Deadline);
    }

    [Fact]
    public void RepeatedPrepare_OfTheSameAttempt_IsAlreadyPrepared()
    {
        var machine = PreparedD1();

        var again = machine.Prepare(T1, Coordinator, 3, D1, T0.AddSeconds(1));

        Assert.Equal(new PrepareResult(PrepareCase.AlreadyPrepared, Vote.Yes, null), again);
        Assert.Equal(D1, machine.Record.Prepared[T1].Deadline);
    }

    [Fact]
    public void Prepare_OfAnotherAttempt_WhilePrepared_IsRefused_AndReservesNothing()
    {
        var machine = PreparedD1();

        var other = machine.Prepare(T1, Coordinator, 3, D2, T0.AddSeconds(1));

        Assert.Equal(PrepareCase.OtherAttempt, other.Case);
        Assert.Equal(Vote.No, other.Vote);
        Assert.False(other.MustPersist);
        Assert.Contains("another attempt", other.Reason);
        Assert.Equal(new[] { 3L }, machine.ReservedWork);
        Assert.Equal(7, Available(machine));
        // The prepared attempt is untouched: still D1, still committable by D1.
        Assert.Equal((D1, T0), (machine.Record.Prepared[T1].Deadline, machine.Record.Prepared[T1].PreparedAt));
        Assert.Equal(DecisionCase.Applied, machine.Commit(T1, T0.AddSeconds(2), D1).Case);
        Assert.Equal((7L, 3L), Counts(machine));
    }

    [Fact]
    public void Prepare_OfAnEarlierAttempt_WhilePrepared_IsRefusedToo()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, D2, T0);
        Assert.Equal((PrepareCase.OtherAttempt, Vote.No), Pair(machine.Prepare(T1, Coordinator, 3, D1, T0)));
        Assert.Equal(new[] { 3L }, machine.ReservedWork);
    }

    [Fact]
    public void Prepare_AfterCommit_OfTheSameAttempt_IsAlreadyCommitted()
    {
        var machine = PreparedD1();
        machine.Commit(T1, T0.AddSeconds(1), D1);
        Assert.Equal(D1, machine.Record.Decided[T1].Deadline);

        var late = machine.Prepare(T1, Coordinator, 3, D1, T0.AddSeconds(2));

        Assert.Equal(new PrepareResult(PrepareCase.AlreadyCommitted, Vote.Yes, null), late);
        Assert.Empty(machine.ReservedWork);
        Assert.Equal((7L, 3L), Counts(machine));
    }

    [Fact]
    public void Prepare_AfterCommit_OfAnotherAttempt_IsRefused_AndReservesNothing()
    {
        var machine = PreparedD1();
        machine.Commit(T1, T0.AddSeconds(1), D1);

        var other = machine.Prepare(T1, Coordinator, 3, D2, T0.AddSeconds(2));

        Assert.Equal(PrepareCase.OtherAttempt, other.Case);
        Assert.Equal(Vote.No, other.Vote);
        Assert.False(other.MustPersist);
        Assert.Contains("already committed", other.Reason);
        Assert.Empty(machine.ReservedWork);
        Assert.Equal(ParticipantTransactionStatus.Committed, machine.StatusOf(T1));
        Assert.Equal((7L, 3L), Counts(machine));
    }

    [Theory]
    [InlineData(5)] // same attempt
    [InlineData(7)] // another attempt
    public void Prepare_AfterRollback_IsAlreadyAborted_WhateverTheAttempt(int deadlineSeconds)
    {
        var machine = PreparedD1();
        machine.Rollback(T1, T0.AddSeconds(1));

        var late = machine.Prepare(T1, Coordinator, 3, T0.AddSeconds(deadlineSeconds), T0.AddSeconds(2));

        Assert.Equal((PrepareCase.AlreadyAborted, Vote.No), Pair(late));
        Assert.False(late.MustPersist);
        Assert.Empty(machine.ReservedWork);
        Assert.Equal(10, Available(machine));
    }

    [Fact]
    public void Prepare_AfterAnUnknownRollback_IsAlreadyAborted_ForAnyAttempt()
    {
        var machine = Counter(10);
        machine.Rollback(T1, T0);
        Assert.Null(machine.Record.Decided[T1].Deadline);
        Assert.Equal(PrepareCase.AlreadyAborted, machine.Prepare(T1, Coordinator, 3, D1, T0).Case);
        Assert.Equal(PrepareCase.AlreadyAborted, machine.Prepare(T1, Coordinator, 3, D2, T0).Case);
        Assert.Empty(machine.ReservedWork);
    }

    // ---------------------------------------------------------------- commit names its attempt

    [Fact]
    public void Commit_WithTheMatchingDeadline_Applies()
    {
        var machine = PreparedD1();

        var result = machine.Commit(T1, T0.AddSeconds(1), D1);

        Assert.Equal(DecisionCase.Applied, result.Case);
        Assert.True(result.MustPersist);
        Assert.Equal((7L, 3L), Counts(machine));
        Assert.Empty(machine.Record.Prepared);
        Assert.Equal((Decision.Commit, (DateTimeOffset?)D1), (machine.Record.Decided[T1].Outcome, machine.Record.Decided[T1].Deadline));
    }

    [Fact]
    public void Commit_OfAnotherAttempt_IsAcknowledged_ButAppliesNothing_AndTheReservationStays()
    {
        var machine = PreparedD1();

        var result = machine.Commit(T1, T0.AddSeconds(1), D2);

        Assert.Equal(DecisionCase.OtherAttempt, result.Case);
        Assert.True(result.Acknowledge);
        Assert.False(result.MustPersist);
        Assert.Equal((10L, 0L), Counts(machine));
        Assert.Equal(ParticipantTransactionStatus.Prepared, machine.StatusOf(T1));
        Assert.Equal(new[] { 3L }, machine.ReservedWork);
        Assert.Equal(D1, machine.Record.Prepared[T1].Deadline);
        Assert.False(machine.Record.Decided.ContainsKey(T1));
        // Repeating the wrong commit changes nothing either; the right one still applies exactly once.
        Assert.Equal(DecisionCase.OtherAttempt, machine.Commit(T1, T0.AddSeconds(2), D2).Case);
        Assert.Equal(DecisionCase.Applied, machine.Commit(T1, T0.AddSeconds(3), D1).Case);
        Assert.Equal(DecisionCase.Repeated, machine.Commit(T1, T0.AddSeconds(4), D1).Case);
        Assert.Equal((7L, 3L), Counts(machine));
    }

    [Fact]
    public void Commit_WithoutADeadline_AppliesWhateverIsPrepared()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, D2, T0);

        var result = machine.Commit(T1, T0.AddSeconds(1), null);

        Assert.Equal(DecisionCase.Applied, result.Case);
        Assert.Equal((7L, 3L), Counts(machine));
        Assert.Equal(D2, machine.Record.Decided[T1].Deadline); // the tombstone names the attempt that was applied
    }

    [Fact]
    public void Commit_OfAnotherAttempt_AfterTheCommit_IsRepeated_NotReapplied()
    {
        var machine = PreparedD1();
        machine.Commit(T1, T0.AddSeconds(1), D1);

        var result = machine.Commit(T1, T0.AddSeconds(2), D2);

        Assert.Equal(DecisionCase.Repeated, result.Case);
        Assert.False(result.MustPersist);
        Assert.Equal((7L, 3L), Counts(machine));
    }

    // ---------------------------------------------------------------- inquiry answers

    [Fact]
    public void Resolve_Abort_RollsBackThePreparedAttempt()
    {
        var machine = PreparedD1();

        var result = machine.Resolve(T1, Decision.Abort, null, T0.AddSeconds(30));

        Assert.Equal(DecisionCase.Released, result.Case);
        Assert.True(result.MustPersist);
        Assert.True(result.Acknowledge);
        Assert.Empty(machine.Record.Prepared);
        Assert.Equal((10L, 0L), Counts(machine));
        Assert.Equal(10, Available(machine));
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));
    }

    [Fact]
    public void Resolve_Abort_WhatEverAttemptItNames_RollsBack()
    {
        var machine = PreparedD1();
        Assert.Equal(DecisionCase.Released, machine.Resolve(T1, Decision.Abort, D2, T0.AddSeconds(30)).Case);
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));
    }

    [Fact]
    public void Resolve_Abort_OfAnUnknownTransaction_IsRecorded_AndRepeatsAreNoOps()
    {
        var machine = Counter(10);
        Assert.Equal(DecisionCase.RecordedUnknownRollback, machine.Resolve(T1, Decision.Abort, null, T0).Case);
        Assert.Equal(DecisionCase.Repeated, machine.Resolve(T1, Decision.Abort, null, T0).Case);
        Assert.Equal(PrepareCase.AlreadyAborted, machine.Prepare(T1, Coordinator, 3, D1, T0).Case);
    }

    [Fact]
    public void Resolve_Abort_AfterACommit_IsAConflict()
    {
        var machine = PreparedD1();
        machine.Commit(T1, T0.AddSeconds(1), D1);
        var result = machine.Resolve(T1, Decision.Abort, null, T0.AddSeconds(2));
        Assert.Equal(DecisionCase.Conflict, result.Case);
        Assert.False(result.Acknowledge);
        Assert.Equal((7L, 3L), Counts(machine));
    }

    [Fact]
    public void Resolve_Commit_OfThePreparedAttempt_Applies()
    {
        var machine = PreparedD1();

        var result = machine.Resolve(T1, Decision.Commit, D1, T0.AddSeconds(30));

        Assert.Equal(DecisionCase.Applied, result.Case);
        Assert.True(result.MustPersist);
        Assert.True(result.Acknowledge);
        Assert.Equal((7L, 3L), Counts(machine));
        Assert.Equal(ParticipantTransactionStatus.Committed, machine.StatusOf(T1));
        Assert.Equal(D1, machine.Record.Decided[T1].Deadline);
    }

    [Fact]
    public void Resolve_Commit_OfAnotherAttempt_DropsTheStaleReservation_WithoutApplyingIt()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, D2, T0);
        Assert.Equal(7, Available(machine));

        var result = machine.Resolve(T1, Decision.Commit, D1, T0.AddSeconds(30));

        Assert.Equal(DecisionCase.DroppedStaleAttempt, result.Case);
        Assert.True(result.MustPersist);
        Assert.True(result.Acknowledge);
        Assert.Empty(machine.Record.Prepared);
        Assert.Empty(machine.ReservedWork);
        Assert.Equal(10, Available(machine));
        Assert.Equal((10L, 0L), Counts(machine)); // nothing applied
        Assert.False(machine.Record.Decided.TryGetValue(T1, out var decided) && decided.Outcome == Decision.Abort,
            "a dropped attempt of a committed transaction must not be remembered as aborted");
        Assert.NotEqual(ParticipantTransactionStatus.Prepared, machine.StatusOf(T1));
        Assert.NotEqual(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));
        // A second answer to the same inquiry no longer finds anything to apply.
        Assert.NotEqual(DecisionCase.Applied, machine.Resolve(T1, Decision.Commit, D1, T0.AddSeconds(31)).Case);
        Assert.Equal((10L, 0L), Counts(machine));
    }

    [Fact]
    public void Resolve_Commit_DroppingAStaleAttempt_LeavesOtherTransactionsAlone()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, D2, T0);
        machine.Prepare("tx-2", "tx-2", 4, D2, T0);

        machine.Resolve(T1, Decision.Commit, D1, T0.AddSeconds(30));

        Assert.Equal(new[] { 4L }, machine.ReservedWork);
        Assert.Equal(ParticipantTransactionStatus.Prepared, machine.StatusOf("tx-2"));
        Assert.Equal(DecisionCase.Applied, machine.Commit("tx-2", T0.AddSeconds(31), D2).Case);
        Assert.Equal((6L, 4L), Counts(machine));
    }

    [Fact]
    public void Resolve_Commit_WhenNothingIsPrepared_IsRepeatedOrUnknownCommit()
    {
        var committed = PreparedD1();
        committed.Commit(T1, T0.AddSeconds(1), D1);
        var repeated = committed.Resolve(T1, Decision.Commit, D1, T0.AddSeconds(2));
        Assert.Equal(DecisionCase.Repeated, repeated.Case);
        Assert.False(repeated.MustPersist);
        Assert.True(repeated.Acknowledge);
        Assert.Equal((7L, 3L), Counts(committed));

        var unknown = Counter(10).Resolve(T1, Decision.Commit, D1, T0);
        Assert.Equal(DecisionCase.UnknownCommit, unknown.Case);
        Assert.False(unknown.MustPersist);
        Assert.True(unknown.Acknowledge);
    }

    [Fact]
    public void Resolve_WithoutADecision_Throws_AndChangesNothing()
    {
        var machine = PreparedD1();
        var ex = Assert.Throws<ArgumentException>(() => machine.Resolve(T1, Decision.None, D1, T0.AddSeconds(30)));
        Assert.Equal("decision", ex.ParamName);
        Assert.Contains("an inquiry answer must be a decision", ex.Message);
        Assert.Equal(ParticipantTransactionStatus.Prepared, machine.StatusOf(T1));
        Assert.Equal((10L, 0L), Counts(machine));
    }

    [Fact]
    public void DroppedStaleAttempt_IsTheOnlyCaseBesidesApplyAndRollbackThatMustBePersisted()
    {
        Assert.True(new DecisionResult(DecisionCase.DroppedStaleAttempt).MustPersist);
        Assert.True(new DecisionResult(DecisionCase.DroppedStaleAttempt).Acknowledge);
        Assert.False(new DecisionResult(DecisionCase.OtherAttempt).MustPersist);
        Assert.True(new DecisionResult(DecisionCase.OtherAttempt).Acknowledge);
        Assert.False(new PrepareResult(PrepareCase.OtherAttempt, Vote.No, "x").MustPersist);
    }

    // ---------------------------------------------------------------- tombstones live until the deadline has passed

    [Fact]
    public void Tombstone_KeepUntil_IsTheDeadlinePlusTheRetention_WhenTheDeadlineIsLater()
    {
        var retention = TimeSpan.FromMinutes(10);
        var deadline = T0.AddHours(1);
        var machine = Counter(10, retention);
        machine.Prepare(T1, Coordinator, 3, deadline, T0);

        machine.Commit(T1, T0.AddSeconds(1), deadline);

        var tombstone = machine.Record.Decided[T1];
        Assert.Equal(deadline + retention, tombstone.KeepUntil);
        Assert.Equal(T0.AddSeconds(1), tombstone.DecidedAt);
        Assert.Equal(deadline, tombstone.Deadline);
    }

    [Fact]
    public void Tombstone_KeepUntil_IsNowPlusTheRetention_WhenTheDeadlineHasPassed()
    {
        var retention = TimeSpan.FromMinutes(10);
        var machine = Counter(10, retention);
        machine.Prepare(T1, Coordinator, 3, D1, T0);
        var late = D1.AddMinutes(3);

        machine.Rollback(T1, late);

        Assert.Equal(late + retention, machine.Record.Decided[T1].KeepUntil);
        Assert.Equal(D1, machine.Record.Decided[T1].Deadline);
    }

    [Fact]
    public void Tombstone_OfAnUnknownRollback_IsKeptForTheRetentionFromNow()
    {
        var retention = TimeSpan.FromMinutes(10);
        var machine = Counter(10, retention);

        machine.Rollback(T1, T0.AddSeconds(3));

        var tombstone = machine.Record.Decided[T1];
        Assert.Equal(T0.AddSeconds(3) + retention, tombstone.KeepUntil);
        Assert.Null(tombstone.Deadline);
    }

    [Fact]
    public void Tombstone_OutlivesTheRetention_UntilItsDeadlineHasPassed()
    {
        var retention = TimeSpan.FromMinutes(2);
        var deadline = T0.AddHours(1);
        var machine = Counter(100, retention);
        machine.Prepare(T1, Coordinator, 3, deadline, T0);
        machine.Commit(T1, T0.AddSeconds(1), deadline);

        // Writes long past the retention (counted from the decision) but before deadline + retention keep it ...
        machine.Rollback("tx-a", T0.AddMinutes(30));
        Assert.Equal(ParticipantTransactionStatus.Committed, machine.StatusOf(T1));
        machine.Rollback("tx-b", deadline + retention);
        Assert.Equal(ParticipantTransactionStatus.Committed, machine.StatusOf(T1));
        // ... so a prepare of another attempt before that deadline is still refused, not reserved again.
        Assert.Equal(PrepareCase.OtherAttempt, machine.Prepare(T1, Coordinator, 3, deadline.AddMinutes(1), T0.AddMinutes(31)).Case);
        Assert.Equal(PrepareCase.AlreadyCommitted, machine.Prepare(T1, Coordinator, 3, deadline, T0.AddMinutes(32)).Case);
        Assert.Empty(machine.ReservedWork);

        // Past deadline + retention the next write forgets it.
        machine.Rollback("tx-c", deadline + retention + TimeSpan.FromSeconds(1));
        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T1));
        Assert.Equal((97L, 3L), Counts(machine));
    }

    [Fact]
    public void Tombstone_OfAnUnknownRollback_IsPrunedRightAfterTheRetention()
    {
        var retention = TimeSpan.FromMinutes(2);
        var machine = Counter(10, retention);
        machine.Rollback(T1, T0);

        machine.Rollback("tx-a", T0 + retention);
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));
        machine.Rollback("tx-b", T0 + retention + TimeSpan.FromTicks(1));
        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T1));
    }

    [Fact]
    public void Tombstones_ArePrunedWhenAStaleAttemptIsDropped()
    {
        var retention = TimeSpan.FromMinutes(2);
        // A record that already holds an old tombstone (as loaded from storage).
        var record = Counter(10, retention).Record;
        record.Decided["tx-old"] = new DecidedTransaction { Outcome = Decision.Abort, DecidedAt = T0, KeepUntil = T0 + retention };
        var machine = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("insufficient stock"), record, retention);
        // Prepared while the old tombstone is still kept: only the drop can prune it.
        machine.Prepare(T1, Coordinator, 3, D2, T0.AddSeconds(1));
        Assert.True(machine.Record.Decided.ContainsKey("tx-old"));

        machine.Resolve(T1, Decision.Commit, D1, T0.AddMinutes(10));

        Assert.False(machine.Record.Decided.ContainsKey("tx-old"));
    }

    [Fact]
    public void Resolve_Commit_OfAnotherAttempt_CancelsAStaleTentativeShipment()
    {
        // An escrow release changes nothing visible; a shipment's release cancels the tentative shipment.
        var details = new ShipmentDetails { OrderId = "ORDER-1", Address = "1 Main St", Items = { new ShipmentItem { Sku = "SKU-1", Quantity = 3 } } };
        var shipment = new ParticipantMachine<ShipmentRecord, ShipmentDetails>(new ShipmentRules(), null, TimeSpan.FromMinutes(2));
        shipment.Prepare(T1, Coordinator, details, D2, T0);

        var result = shipment.Resolve(T1, Decision.Commit, D1, T0.AddSeconds(30));

        Assert.Equal(DecisionCase.DroppedStaleAttempt, result.Case);
        Assert.Equal((ShipmentStatus.Cancelled, T1, T0.AddSeconds(30)), (shipment.Record.Resource.Status, shipment.Record.Resource.TransactionId, shipment.Record.Resource.ChangedAt));
        Assert.Empty(shipment.Record.Prepared);
    }

    // ---------------------------------------------------------------- duplicate coordinator activation

    /// <summary>
    /// D1 prepared and committed; its tombstone pruned; a duplicate coordinator activation's prepare (D2, before
    /// its deadline) reserves again. The in-doubt inquiry answer (commit, D1) must drop that reservation and
    /// leave the committed value decremented exactly once.
    /// </summary>
    [Fact]
    public void DuplicateActivation_AfterTheTombstoneIsGone_ReservesAgain_ButTheInquiryDropsIt_AppliedExactlyOnce()
    {
        var retention = TimeSpan.FromMinutes(2);
        var machine = Counter(10, retention);
        Assert.Equal(PrepareCase.Reserved, machine.Prepare(T1, Coordinator, 3, D1, T0).Case);
        Assert.Equal(DecisionCase.Applied, machine.Commit(T1, T0.AddSeconds(1), D1).Case);
        Assert.Equal((7L, 3L), Counts(machine));

        // Long after: another write prunes the tombstone.
        var later = D1 + retention + TimeSpan.FromMinutes(1);
        machine.Rollback("tx-other", later);
        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T1));

        // The duplicate activation begins: attempt D2, before its deadline.
        var d2 = later.AddSeconds(5);
        var prepare = machine.Prepare(T1, Coordinator, 3, d2, later.AddMilliseconds(10));
        Assert.Equal(PrepareCase.Reserved, prepare.Case);
        Assert.Equal(4, Available(machine));

        // The first activation's phase two, retried late, names D1: acknowledged, nothing applied.
        Assert.Equal(DecisionCase.OtherAttempt, machine.Commit(T1, later.AddSeconds(1), D1).Case);
        Assert.Equal((7L, 3L), Counts(machine));

        // In doubt: the coordinator's record answers commit of D1.
        Assert.Equal(new[] { (T1, Coordinator) }, machine.InDoubt(later.AddMinutes(1), TimeSpan.FromSeconds(30)));
        var answer = machine.Resolve(T1, Decision.Commit, D1, later.AddMinutes(1));

        Assert.Equal(DecisionCase.DroppedStaleAttempt, answer.Case);
        Assert.True(answer.MustPersist);
        Assert.Equal((7L, 3L), Counts(machine)); // decremented exactly once
        Assert.Equal(7, Available(machine));
        Assert.Empty(machine.ReservedWork);
        Assert.Empty(machine.InDoubt(later.AddMinutes(5), TimeSpan.FromSeconds(30)));
        Assert.Equal(10, machine.Record.Resource.Committed + machine.Record.Resource.ConsumedTotal);
    }

    [Fact]
    public void DuplicateActivation_WhileTheFirstAttemptIsPrepared_IsRefused_AndTheFirstStillCommitsOnce()
    {
        var machine = PreparedD1();

        var duplicate = machine.Prepare(T1, Coordinator, 3, D2, T0.AddSeconds(2));
        Assert.Equal((PrepareCase.OtherAttempt, Vote.No), Pair(duplicate));
        Assert.Equal(new[] { 3L }, machine.ReservedWork);

        Assert.Equal(DecisionCase.Applied, machine.Commit(T1, T0.AddSeconds(3), D1).Case);
        Assert.Equal(PrepareCase.OtherAttempt, machine.Prepare(T1, Coordinator, 3, D2, T0.AddSeconds(4)).Case);
        Assert.Equal(DecisionCase.Repeated, machine.Resolve(T1, Decision.Commit, D1, T0.AddSeconds(40)).Case);
        Assert.Equal((7L, 3L), Counts(machine));
    }

    [Fact]
    public void DuplicateActivation_OfAnAbortedTransaction_IsRolledBackByTheInquiryAnswer()
    {
        var retention = TimeSpan.FromMinutes(2);
        var machine = Counter(10, retention);
        machine.Prepare(T1, Coordinator, 3, D1, T0);
        machine.Rollback(T1, T0.AddSeconds(1));
        var later = D1 + retention + TimeSpan.FromMinutes(1);
        machine.Rollback("tx-other", later);
        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T1));

        Assert.Equal(PrepareCase.Reserved, machine.Prepare(T1, Coordinator, 3, later.AddSeconds(5), later).Case);
        var answer = machine.Resolve(T1, Decision.Abort, null, later.AddMinutes(1)); // a presumed abort names no attempt

        Assert.Equal(DecisionCase.Released, answer.Case);
        Assert.Equal((10L, 0L), Counts(machine));
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));
    }

    /// <summary>
    /// The same story driven by the real machines on both sides: the first activation commits with D1 and
    /// completes; a duplicate activation (no record loaded) begins attempt D2 after the tombstones are gone.
    /// The counters reserve again; a confirmed shipment refuses (the duplicate then decides abort), without
    /// it every vote is yes (the duplicate decides commit). Either way its versioned insert fails because a
    /// record exists, so it never sends a decision. The participants' in-doubt inquiry, answered from the
    /// durable record (decision and its PrepareDeadline), drops D2: each counter is decremented once.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void DuplicateActivation_EndToEnd_TheFailedInsertLeavesNothingApplied_AndTheInquiryCleansUp(bool withShipment)
    {
        const string tx = "tx-ORDER-1";
        var options = Options();
        options.DecisionRetention = TimeSpan.FromMinutes(2);
        var sku = Counter(10, options.DecisionRetention);
        var account = Counter(1_000, options.DecisionRetention, "insufficient funds");
        var details = new ShipmentDetails { OrderId = "ORDER-1", Address = "1 Main St", Items = { new ShipmentItem { Sku = "SKU-1", Quantity = 3 } } };
        var shipment = new ParticipantMachine<ShipmentRecord, ShipmentDetails>(new ShipmentRules(), null, options.DecisionRetention);
        var participants = withShipment ? new[] { Sku, Account, Shipment } : new[] { Sku, Account };

        PrepareResult PrepareAt(ParticipantId p, DateTimeOffset deadline, DateTimeOffset now) => p.Kind switch
        {
            ParticipantKind.Inventory => sku.Prepare(tx, tx, 3, deadline, now),
            ParticipantKind.Payment => account.Prepare(tx, tx, 300, deadline, now),
            _ => shipment.Prepare(tx, tx, details, deadline, now),
        };
        DecisionResult CommitAt(ParticipantId p, DateTimeOffset? deadline, DateTimeOffset now) => p.Kind switch
        {
            ParticipantKind.Inventory => sku.Commit(tx, now, deadline),
            ParticipantKind.Payment => account.Commit(tx, now, deadline),
            _ => shipment.Commit(tx, now, deadline),
        };

        // First activation: commit, durable, delivered, completed.
        var first = new CoordinatorMachine(tx, options, null);
        var begin = first.Begin("fp", participants, T0);
        var d1 = begin.OfType<SendPrepare>().Select(s => s.Deadline).Distinct().Single();
        Assert.Equal(d1, first.Record.PrepareDeadline);
        foreach (var p in participants)
        {
            var vote = PrepareAt(p, d1, T0.AddMilliseconds(5));
            Assert.Equal(PrepareCase.Reserved, vote.Case);
            first.OnVote(p, vote.Vote, vote.Reason, T0.AddMilliseconds(6));
        }
        Assert.Equal(CoordinatorPhase.Deciding, first.Phase);
        var stored = Durable(first.Record); // the versioned insert succeeds: nothing there yet
        foreach (var send in first.OnDecisionPersisted().OfType<SendDecision>())
        {
            Assert.Equal(DecisionCase.Applied, CommitAt(send.Participant, stored.PrepareDeadline, T0.AddMilliseconds(10)).Case);
            first.OnDecisionAcknowledged(send.Participant, T0.AddMilliseconds(11));
        }
        first.OnCompletionPersisted();
        stored = Durable(first.Record);
        Assert.Equal(CoordinatorPhase.Completed, first.Phase);
        Assert.Equal((7L, 3L), Counts(sku));
        Assert.Equal((700L, 300L), Counts(account));

        // Much later a write on each participant prunes the tombstones.
        var later = d1 + options.DecisionRetention + TimeSpan.FromMinutes(1);
        sku.Rollback("tx-noise", later);
        account.Rollback("tx-noise", later);
        shipment.Rollback("tx-noise", later);
        Assert.Equal(ParticipantTransactionStatus.Unknown, sku.StatusOf(tx));
        Assert.Equal(ParticipantTransactionStatus.Unknown, account.StatusOf(tx));

        // A duplicate activation that loaded no record begins again: attempt D2.
        var duplicate = new CoordinatorMachine(tx, options, null);
        var d2 = duplicate.Begin("fp", participants, later).OfType<SendPrepare>().Select(s => s.Deadline).Distinct().Single();
        Assert.NotEqual(d1, d2);
        Assert.Equal(d2, duplicate.Record.PrepareDeadline);
        var votes = participants.ToDictionary(p => p, p => PrepareAt(p, d2, later.AddMilliseconds(5)));
        Assert.Equal(PrepareCase.Reserved, votes[Sku].Case);
        Assert.Equal(PrepareCase.Reserved, votes[Account].Case);
        if (withShipment) Assert.Equal(PrepareCase.Refused, votes[Shipment].Case); // "already confirmed"
        foreach (var (p, vote) in votes) duplicate.OnVote(p, vote.Vote, vote.Reason, later.AddMilliseconds(6));
        Assert.Equal((CoordinatorPhase.Deciding, withShipment ? Decision.Abort : Decision.Commit), (duplicate.Phase, duplicate.Record.Decision));

        // Its versioned insert fails: a record exists. It reloads that record and has nothing to tell anybody.
        duplicate.OnDecisionPersistFailed();
        Assert.Equal(CoordinatorPhase.InDoubt, duplicate.Phase);
        var reloaded = new CoordinatorMachine(tx, options, Durable(stored));
        Assert.Equal(CoordinatorPhase.Completed, reloaded.Phase);
        Assert.Empty(reloaded.Resume(later.AddSeconds(1)));
        Assert.Equal((7L, 3L), Counts(sku));
        Assert.Equal((700L, 300L), Counts(account));

        // The participants holding D2 go in doubt and ask; the record answers commit of D1.
        var asked = later.AddMinutes(1);
        var inquiry = reloaded.OnInquiry(asked);
        Assert.Equal(Decision.Commit, inquiry.Decision);
        Assert.Empty(inquiry.Actions);
        Assert.Equal(d1, reloaded.Record.PrepareDeadline);
        foreach (var counter in new[] { sku, account })
        {
            var (inDoubt, _) = Assert.Single(counter.InDoubt(asked, options.InDoubtTimeout));
            Assert.Equal(tx, inDoubt);
            Assert.Equal(DecisionCase.DroppedStaleAttempt, counter.Resolve(tx, inquiry.Decision, reloaded.Record.PrepareDeadline, asked).Case);
            Assert.Empty(counter.ReservedWork);
            Assert.Empty(counter.InDoubt(asked.AddMinutes(5), options.InDoubtTimeout));
        }
        Assert.Equal((7L, 3L), Counts(sku));
        Assert.Equal((700L, 300L), Counts(account));
        if (withShipment)
        {
            Assert.Equal(ShipmentStatus.Confirmed, shipment.Record.Resource.Status);
            Assert.Empty(shipment.ReservedWork);
        }
    }

    private static (PrepareCase, Vote) Pair(PrepareResult r) => (r.Case, r.Vote);
}
