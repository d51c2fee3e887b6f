using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using static OrleansTwoPC.Protocol.Tests.TestSupport;

namespace OrleansTwoPC.Protocol.Tests;

/// <summary>
/// Every transition of <see cref="ParticipantMachine{TResource,TWork}"/>, on an escrow counter (10 units):
/// none → prepared → committed | aborted, with repeats, reordering, late prepares and tombstones.
/// </summary>
public sealed class ParticipantMachineTests
{
    private const string T1 = "tx-1";
    private const string T2 = "tx-2";
    private const string Coordinator = "tx-1";
    private static readonly DateTimeOffset Deadline = T0.AddSeconds(5);

    private static long Available(ParticipantMachine<EscrowCounter, long> m) => EscrowRules.Available(m.Record.Resource, m.ReservedWork);

    // ---------------------------------------------------------------- prepare

    [Fact]
    public void Prepare_Reserves_AndMustBePersistedBeforeVotingYes()
    {
        var machine = Counter(10);

        var result = machine.Prepare(T1, Coordinator, 3, Deadline, T0);

        Assert.Equal(new PrepareResult(PrepareCase.Reserved, Vote.Yes, null), result);
        Assert.True(result.MustPersist);
        Assert.Equal(ParticipantTransactionStatus.Prepared, machine.StatusOf(T1));
        Assert.Equal(new[] { 3L }, machine.ReservedWork);
        var prepared = machine.Record.Prepared[T1];
        Assert.Equal((3L, Coordinator, T0), (prepared.Work, prepared.Coordinator, prepared.PreparedAt));
        // The reservation is invisible to the committed value: only availability shrinks.
        Assert.Equal(10, machine.Record.Resource.Committed);
        Assert.Equal(0, machine.Record.Resource.ConsumedTotal);
        Assert.Equal(7, Available(machine));
    }

    [Fact]
    public void RepeatedPrepare_VotesYesAgain_WithoutASecondReservation()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);

        var again = machine.Prepare(T1, Coordinator, 3, Deadline, T0.AddSeconds(1));

        Assert.Equal(new PrepareResult(PrepareCase.AlreadyPrepared, Vote.Yes, null), again);
        Assert.False(again.MustPersist);
        Assert.Equal(new[] { 3L }, machine.ReservedWork);
        Assert.Equal(7, Available(machine));
        Assert.Equal(T0, machine.Record.Prepared[T1].PreparedAt);
    }

    [Fact]
    public void RepeatedPrepare_AfterItsDeadline_StillYes_BecauseTheReservationIsDurable()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);
        Assert.Equal(PrepareCase.AlreadyPrepared, machine.Prepare(T1, Coordinator, 3, Deadline, Deadline.AddSeconds(1)).Case);
    }

    [Fact]
    public void PrepareAfterCommit_IsYes_AndChangesNothing()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);
        machine.Commit(T1, T0.AddSeconds(1));

        var late = machine.Prepare(T1, Coordinator, 3, Deadline, T0.AddSeconds(2));

        Assert.Equal(new PrepareResult(PrepareCase.AlreadyCommitted, Vote.Yes, null), late);
        Assert.False(late.MustPersist);
        Assert.Empty(machine.ReservedWork);
        Assert.Equal((7L, 3L), (machine.Record.Resource.Committed, machine.Record.Resource.ConsumedTotal));
        Assert.Equal(ParticipantTransactionStatus.Committed, machine.StatusOf(T1));
    }

    [Fact]
    public void PrepareAfterRollback_IsRefused_AndReservesNothing()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);
        machine.Rollback(T1, T0.AddSeconds(1));

        var hanging = machine.Prepare(T1, Coordinator, 3, Deadline, T0.AddSeconds(2));

        Assert.Equal(PrepareCase.AlreadyAborted, hanging.Case);
        Assert.Equal(Vote.No, hanging.Vote);
        Assert.Contains("rolled back", hanging.Reason);
        Assert.False(hanging.MustPersist);
        Assert.Empty(machine.ReservedWork);
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));
    }

    [Fact]
    public void PrepareAfterItsDeadline_IsRefused_AndLeavesNoTrace()
    {
        var machine = Counter(10);

        var late = machine.Prepare(T1, Coordinator, 3, Deadline, Deadline.AddMilliseconds(250));

        Assert.Equal(PrepareCase.DeadlinePassed, late.Case);
        Assert.Equal(Vote.No, late.Vote);
        Assert.Contains("250 ms after its deadline", late.Reason);
        Assert.False(late.MustPersist);
        Assert.Empty(machine.ReservedWork);
        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T1));
    }

    [Fact]
    public void PrepareBeforeItsDeadline_IsAccepted()
    {
        Assert.Equal(PrepareCase.Reserved, Counter(10).Prepare(T1, Coordinator, 3, Deadline, Deadline.AddMilliseconds(-1)).Case);
    }

    [Fact]
    public void PrepareExactlyAtItsDeadline_IsAccepted()
    {
        // The deadline is the last moment a prepare counts; only a later one is refused.
        Assert.Equal(PrepareCase.Reserved, Counter(10).Prepare(T1, Coordinator, 3, Deadline, Deadline).Case);
        Assert.Equal(PrepareCase.DeadlinePassed, Counter(10).Prepare(T1, Coordinator, 3, Deadline, Deadline.AddTicks(1)).Case);
    }

    [Fact]
    public void InsufficientStock_IsRefused_WithTheAvailableAmountInTheReason()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 7, Deadline, T0);

        var refused = machine.Prepare(T2, "tx-2", 5, Deadline, T0);

        Assert.Equal(PrepareCase.Refused, refused.Case);
        Assert.Equal(Vote.No, refused.Vote);
        Assert.False(refused.MustPersist);
        Assert.Contains("insufficient stock", refused.Reason);
        Assert.Contains("requested 5", refused.Reason);
        Assert.Contains("available 3", refused.Reason);
        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T2));
        Assert.Equal(new[] { 7L }, machine.ReservedWork);
    }

    [Fact]
    public void InsufficientFunds_IsRefused_WithTheAvailableAmountInTheReason()
    {
        var account = Counter(1_000, shortage: "insufficient funds");
        var refused = account.Prepare(T1, Coordinator, 1_001, Deadline, T0);
        Assert.Equal(PrepareCase.Refused, refused.Case);
        Assert.Equal("insufficient funds: requested 1001, available 1000", refused.Reason);
    }

    [Fact]
    public void UnseededResource_IsRefused()
    {
        var machine = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("insufficient stock"), null, TimeSpan.FromHours(1));
        Assert.False(machine.Record.Resource.Exists);

        var refused = machine.Prepare(T1, Coordinator, 1, Deadline, T0);

        Assert.Equal((PrepareCase.Refused, Vote.No), (refused.Case, refused.Vote));
        Assert.Contains("unknown resource", refused.Reason);
        Assert.Empty(machine.Record.Prepared);
    }

    // ---------------------------------------------------------------- commit

    [Fact]
    public void Commit_AppliesTheReservationOnce()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);

        var result = machine.Commit(T1, T0.AddSeconds(1));

        Assert.Equal(DecisionCase.Applied, result.Case);
        Assert.True(result.MustPersist);
        Assert.True(result.Acknowledge);
        Assert.Equal((7L, 3L), (machine.Record.Resource.Committed, machine.Record.Resource.ConsumedTotal));
        Assert.Empty(machine.Record.Prepared);
        Assert.Equal(ParticipantTransactionStatus.Committed, machine.StatusOf(T1));
        Assert.Equal(T0.AddSeconds(1), machine.Record.Decided[T1].DecidedAt);
    }

    [Fact]
    public void CommitTwice_IsANoOp_NoDoubleDecrement()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);
        machine.Commit(T1, T0.AddSeconds(1));

        var again = machine.Commit(T1, T0.AddSeconds(2));

        Assert.Equal(DecisionCase.Repeated, again.Case);
        Assert.False(again.MustPersist);
        Assert.True(again.Acknowledge);
        Assert.Equal((7L, 3L), (machine.Record.Resource.Committed, machine.Record.Resource.ConsumedTotal));
        Assert.Equal(T0.AddSeconds(1), machine.Record.Decided[T1].DecidedAt);
    }

    [Fact]
    public void CommitOfAnUnknownTransaction_IsAcknowledged_WithoutPersistingOrChangingAnything()
    {
        var machine = Counter(10);

        var result = machine.Commit(T1, T0);

        Assert.Equal(DecisionCase.UnknownCommit, result.Case);
        Assert.True(result.Acknowledge);
        Assert.False(result.MustPersist);
        Assert.Equal((10L, 0L), (machine.Record.Resource.Committed, machine.Record.Resource.ConsumedTotal));
        Assert.Empty(machine.Record.Decided);
        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T1));
    }

    [Fact]
    public void CommitAfterRollback_IsAConflict_NeverAcknowledged_NothingApplied()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);
        machine.Rollback(T1, T0.AddSeconds(1));

        var result = machine.Commit(T1, T0.AddSeconds(2));

        Assert.Equal(DecisionCase.Conflict, result.Case);
        Assert.False(result.Acknowledge);
        Assert.False(result.MustPersist);
        Assert.Equal((10L, 0L), (machine.Record.Resource.Committed, machine.Record.Resource.ConsumedTotal));
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));
    }

    // ---------------------------------------------------------------- rollback

    [Fact]
    public void Rollback_ReleasesTheReservation()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);

        var result = machine.Rollback(T1, T0.AddSeconds(1));

        Assert.Equal(DecisionCase.Released, result.Case);
        Assert.True(result.MustPersist);
        Assert.True(result.Acknowledge);
        Assert.Empty(machine.Record.Prepared);
        Assert.Equal(10, Available(machine));
        Assert.Equal((10L, 0L), (machine.Record.Resource.Committed, machine.Record.Resource.ConsumedTotal));
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));
    }

    [Fact]
    public void RollbackTwice_IsANoOp()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);
        machine.Rollback(T1, T0.AddSeconds(1));

        var again = machine.Rollback(T1, T0.AddSeconds(2));

        Assert.Equal(DecisionCase.Repeated, again.Case);
        Assert.False(again.MustPersist);
        Assert.True(again.Acknowledge);
        Assert.Equal(T0.AddSeconds(1), machine.Record.Decided[T1].DecidedAt);
        Assert.Equal(10, Available(machine));
    }

    [Fact]
    public void RollbackOfANeverPreparedTransaction_IsRecorded_SoALatePrepareIsRefused()
    {
        var machine = Counter(10);

        var result = machine.Rollback(T1, T0);

        Assert.Equal(DecisionCase.RecordedUnknownRollback, result.Case);
        Assert.True(result.MustPersist);
        Assert.True(result.Acknowledge);
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));
        Assert.Equal(Decision.Abort, machine.Record.Decided[T1].Outcome);

        // The prepare that was overtaken by its rollback arrives, well before its deadline.
        var late = machine.Prepare(T1, Coordinator, 3, Deadline, T0.AddMilliseconds(1));
        Assert.Equal((PrepareCase.AlreadyAborted, Vote.No), (late.Case, late.Vote));
        Assert.Empty(machine.ReservedWork);
        Assert.Equal(10, Available(machine));
    }

    [Fact]
    public void RollbackAfterCommit_IsAConflict_NeverAcknowledged_NothingUndone()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);
        machine.Commit(T1, T0.AddSeconds(1));

        var result = machine.Rollback(T1, T0.AddSeconds(2));

        Assert.Equal(DecisionCase.Conflict, result.Case);
        Assert.False(result.Acknowledge);
        Assert.False(result.MustPersist);
        Assert.Equal((7L, 3L), (machine.Record.Resource.Committed, machine.Record.Resource.ConsumedTotal));
        Assert.Equal(ParticipantTransactionStatus.Committed, machine.StatusOf(T1));
    }

    [Fact]
    public void Decisions_OnlyTouchTheirOwnTransaction()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);
        machine.Prepare(T2, "tx-2", 4, Deadline, T0);

        machine.Rollback(T1, T0.AddSeconds(1));

        Assert.Equal(new[] { 4L }, machine.ReservedWork);
        Assert.Equal(ParticipantTransactionStatus.Prepared, machine.StatusOf(T2));
        machine.Commit(T2, T0.AddSeconds(1));
        Assert.Equal((6L, 4L), (machine.Record.Resource.Committed, machine.Record.Resource.ConsumedTotal));
    }

    // ---------------------------------------------------------------- tombstones

    [Fact]
    public void Tombstones_ArePrunedAfterTheRetention_OnTheNextWrite()
    {
        var retention = TimeSpan.FromMinutes(10);
        var machine = Counter(10, retention);
        machine.Rollback(T1, T0);

        // Within the retention a write keeps the tombstone ...
        machine.Prepare("tx-a", "tx-a", 1, T0 + retention, T0 + retention - TimeSpan.FromSeconds(1));
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));
        // ... and exactly at the retention too.
        machine.Commit("tx-a", T0 + retention);
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));

        // Past it, the next write forgets it.
        var later = T0 + retention + TimeSpan.FromSeconds(1);
        machine.Rollback("tx-b", later);
        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T1));
        Assert.False(machine.Record.Decided.ContainsKey(T1));
        // The younger tombstones stay.
        Assert.Equal(ParticipantTransactionStatus.Committed, machine.StatusOf("tx-a"));
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf("tx-b"));
    }

    [Fact]
    public void Tombstones_ArePrunedOnPrepareAndCommitToo()
    {
        var retention = TimeSpan.FromMinutes(10);
        var late = T0 + retention + TimeSpan.FromSeconds(1);

        var onPrepare = Counter(10, retention);
        onPrepare.Rollback(T1, T0);
        onPrepare.Prepare(T2, "tx-2", 1, late.AddSeconds(5), late);
        Assert.Equal(ParticipantTransactionStatus.Unknown, onPrepare.StatusOf(T1));

        var onCommit = Counter(10, retention);
        onCommit.Rollback(T1, T0);
        onCommit.Prepare(T2, "tx-2", 1, T0.AddSeconds(5), T0);
        onCommit.Commit(T2, late);
        Assert.Equal(ParticipantTransactionStatus.Unknown, onCommit.StatusOf(T1));
    }

    [Fact]
    public void ATombstone_IsKeptAtExactlyItsKeepUntilTime_WhileAnOlderOneIsPruned()
    {
        var retention = TimeSpan.FromMinutes(10);
        var machine = Counter(10, retention);
        machine.Rollback(T1, T0);
        machine.Rollback(T2, T0.AddMinutes(1));

        // The older tombstone has expired, the younger one reaches its keep-until time only now.
        machine.Rollback("tx-a", T0.AddMinutes(1) + retention);

        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T1));
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T2));
    }

    [Fact]
    public void TombstonesThatExpireTogether_GoAFewPerStep_OldestFirst()
    {
        // However many expired while the participant was idle, one step forgets at most two, so the write that
        // carries it stays small; the following steps forget the rest.
        var retention = TimeSpan.FromMinutes(10);
        var machine = Counter(10, retention);
        machine.Rollback(T1, T0);
        machine.Rollback(T2, T0.AddSeconds(1));
        machine.Rollback("tx-3", T0.AddSeconds(2));
        machine.Rollback("tx-4", T0.AddSeconds(3));
        machine.Rollback("tx-5", T0.AddSeconds(4));
        var later = T0.AddSeconds(10) + retention;

        machine.Rollback("tx-a", later);
        Assert.Equal(ParticipantMachine<EscrowCounter, long>.MaxExpiriesPerStep, 2);
        Assert.Equal(new[] { "tx-3", "tx-4", "tx-5", "tx-a" }, machine.Record.Decided.Keys.Order(StringComparer.Ordinal));

        machine.Rollback("tx-b", later);
        Assert.Equal(new[] { "tx-5", "tx-a", "tx-b" }, machine.Record.Decided.Keys.Order(StringComparer.Ordinal));

        machine.Rollback("tx-c", later);
        Assert.Equal(new[] { "tx-a", "tx-b", "tx-c" }, machine.Record.Decided.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void ANegativeRetention_HoldsTombstonesAtTheStartOfTheCalendar_InsteadOfOverflowing()
    {
        // Only a misconfiguration gives a negative retention; a step must still never throw half-way.
        // The tombstone of a reservation whose deadline lies two hours ahead is kept until one hour ahead.
        var retention = TimeSpan.FromHours(-1);
        var machine = Counter(10, retention);
        machine.Prepare(T1, Coordinator, 3, T0.AddHours(2), T0);
        machine.Rollback(T1, T0);
        Assert.Equal(T0.AddHours(1), machine.Record.Decided[T1].KeepUntil);

        // Near the start of the calendar the keep-until time holds at its start (and is pruned at once).
        var early = DateTimeOffset.MinValue.AddMinutes(10);
        var atTheStart = Counter(10, retention);
        atTheStart.Prepare(T1, Coordinator, 3, early.AddMinutes(10), early);
        Assert.Equal(DecisionCase.Released, atTheStart.Rollback(T1, early).Case);
        Assert.Equal(ParticipantTransactionStatus.Unknown, atTheStart.StatusOf(T1));
    }

    [Fact]
    public void AReloadedRecord_PrunesItsEarliestTombstone_OnTheFirstWritePastIt()
    {
        var retention = TimeSpan.FromMinutes(10);
        var record = Counter(10, retention).Record;
        record.Decided[T2] = new DecidedTransaction { Outcome = Decision.Abort, DecidedAt = T0.AddMinutes(5), KeepUntil = T0.AddMinutes(5) + retention };
        record.Decided[T1] = new DecidedTransaction { Outcome = Decision.Abort, DecidedAt = T0, KeepUntil = T0 + retention };
        var machine = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("insufficient stock"), record, retention);

        machine.Rollback("tx-a", T0 + retention + TimeSpan.FromSeconds(1));

        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T1));
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T2));
    }

    [Fact]
    public void AfterPruning_AHangingPrepareIsStillRefused_ByItsDeadline()
    {
        // Why DecisionRetention must exceed PrepareTimeout: once the tombstone is gone the deadline guards.
        var retention = TimeSpan.FromMinutes(10);
        var machine = Counter(10, retention);
        machine.Rollback(T1, T0);
        var later = T0 + retention + TimeSpan.FromSeconds(1);
        machine.Rollback("tx-other", later);
        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T1));

        var hanging = machine.Prepare(T1, Coordinator, 3, Deadline, later);
        Assert.Equal(PrepareCase.DeadlinePassed, hanging.Case);
        Assert.Empty(machine.ReservedWork);
    }

    [Fact]
    public void PreparedTransactions_AreNeverPruned()
    {
        var retention = TimeSpan.FromMinutes(10);
        var machine = Counter(10, retention);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);
        machine.Rollback("tx-other", T0 + TimeSpan.FromDays(1));
        Assert.Equal(ParticipantTransactionStatus.Prepared, machine.StatusOf(T1));
    }

    // ---------------------------------------------------------------- in doubt

    [Fact]
    public void InDoubt_ListsOnlyTransactionsPreparedLongerThanTheTimeout_OldestFirst()
    {
        var timeout = TimeSpan.FromSeconds(30);
        var machine = Counter(100);
        machine.Prepare("tx-c", "coord-c", 1, T0.AddMinutes(5), T0.AddSeconds(20));
        machine.Prepare("tx-a", "coord-a", 1, T0.AddMinutes(5), T0);
        machine.Prepare("tx-b", "coord-b", 1, T0.AddMinutes(5), T0.AddSeconds(10));
        machine.Prepare("tx-done", "coord-d", 1, T0.AddMinutes(5), T0);
        machine.Commit("tx-done", T0.AddSeconds(1));

        Assert.Empty(machine.InDoubt(T0.AddSeconds(29), timeout));
        Assert.Equal(new[] { ("tx-a", "coord-a") }, machine.InDoubt(T0 + timeout, timeout)); // exactly the timeout counts
        Assert.Equal(new[] { ("tx-a", "coord-a") }, machine.InDoubt(T0.AddSeconds(35), timeout));
        Assert.Equal(new[] { ("tx-a", "coord-a"), ("tx-b", "coord-b") }, machine.InDoubt(T0.AddSeconds(45), timeout));
        Assert.Equal(new[] { ("tx-a", "coord-a"), ("tx-b", "coord-b"), ("tx-c", "coord-c") }, machine.InDoubt(T0.AddMinutes(2), timeout));

        machine.Rollback("tx-a", T0.AddMinutes(2));
        Assert.Equal(new[] { ("tx-b", "coord-b"), ("tx-c", "coord-c") }, machine.InDoubt(T0.AddMinutes(2), timeout));
    }

    // ---------------------------------------------------------------- durability

    [Fact]
    public void Constructor_WithoutRecord_StartsEmpty()
    {
        var machine = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("x"), null, TimeSpan.FromHours(1));
        Assert.Empty(machine.Record.Prepared);
        Assert.Empty(machine.Record.Decided);
        Assert.Equal(ParticipantTransactionStatus.Unknown, machine.StatusOf(T1));
    }

    [Fact]
    public void ARestartedParticipant_KeepsItsReservation_AndFinishesFromTheDurableRecord()
    {
        var machine = Counter(10);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);
        machine.Rollback(T2, T0);
        var written = Durable(machine.Record);

        var restarted = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("insufficient stock"), written, TimeSpan.FromHours(1));

        Assert.Equal(ParticipantTransactionStatus.Prepared, restarted.StatusOf(T1));
        Assert.Equal(ParticipantTransactionStatus.Aborted, restarted.StatusOf(T2));
        Assert.Equal(7, Available(restarted));
        Assert.Equal(new[] { (T1, Coordinator) }, restarted.InDoubt(T0.AddMinutes(1), TimeSpan.FromSeconds(30)));
        Assert.Equal(PrepareCase.AlreadyPrepared, restarted.Prepare(T1, Coordinator, 3, Deadline, T0).Case);
        Assert.Equal(DecisionCase.Applied, restarted.Commit(T1, T0.AddSeconds(1)).Case);
        Assert.Equal(7, restarted.Record.Resource.Committed);
    }

    [Fact]
    public void ALostPrepare_IsForgottenOnRestart_AndItsRollbackIsThenRecorded()
    {
        // P1: the participant reserved in memory and died before the write: the restart forgets it.
        var machine = Counter(10);
        var beforeWrite = Durable(machine.Record);
        machine.Prepare(T1, Coordinator, 3, Deadline, T0);

        var restarted = new ParticipantMachine<EscrowCounter, long>(new EscrowRules("insufficient stock"), beforeWrite, TimeSpan.FromHours(1));

        Assert.Equal(ParticipantTransactionStatus.Unknown, restarted.StatusOf(T1));
        Assert.Equal(DecisionCase.RecordedUnknownRollback, restarted.Rollback(T1, T0.AddSeconds(6)).Case);
        Assert.Equal(10, Available(restarted));
    }
}
