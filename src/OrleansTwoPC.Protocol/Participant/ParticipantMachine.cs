namespace OrleansTwoPC.Protocol.Participant;

public enum PrepareCase
{
    /// <summary>Reserved now: persist before voting yes.</summary>
    Reserved,
    /// <summary>Already prepared (repeated prepare): yes again, nothing new reserved.</summary>
    AlreadyPrepared,
    /// <summary>Already committed (a very late duplicate): yes, nothing changes.</summary>
    AlreadyCommitted,
    /// <summary>Already rolled back: a prepare after its rollback is refused.</summary>
    AlreadyAborted,
    /// <summary>Arrived after the coordinator's deadline: the coordinator has aborted, so refuse.</summary>
    DeadlinePassed,
    /// <summary>The resource cannot take it (stock, funds, ...).</summary>
    Refused,
    /// <summary>Another attempt of the same transaction (a different deadline, i.e. a duplicate coordinator
    /// activation) is prepared or decided here: refuse, so one transaction is never applied twice.</summary>
    OtherAttempt,
    /// <summary>The same attempt is prepared here with other content (amount, lines): refuse and keep what is
    /// reserved, so a yes always covers exactly the work that was asked for.</summary>
    OtherContent,
}

public sealed record PrepareResult(PrepareCase Case, Vote Vote, string? Reason)
{
    public bool MustPersist => Case == PrepareCase.Reserved;
}

public enum DecisionCase
{
    /// <summary>Commit applied: persist, then acknowledge.</summary>
    Applied,
    /// <summary>Rollback released the reservation: persist, then acknowledge.</summary>
    Released,
    /// <summary>Rollback of a transaction never prepared here: recorded (persist) so a late prepare is refused.</summary>
    RecordedUnknownRollback,
    /// <summary>Repeated decision: acknowledge, nothing to do.</summary>
    Repeated,
    /// <summary>Commit of a transaction this participant does not know (its tombstone expired): acknowledge.</summary>
    UnknownCommit,
    /// <summary>The opposite decision was already applied: a protocol violation, never acknowledged.</summary>
    Conflict,
    /// <summary>Commit of another attempt than the one prepared here: acknowledged, nothing applied; the
    /// prepared attempt is settled by asking the coordinator.</summary>
    OtherAttempt,
    /// <summary>Inquiry answer: the prepared attempt was not the decided one, its reservation is dropped.</summary>
    DroppedStaleAttempt,
}

public sealed record DecisionResult(DecisionCase Case)
{
    public bool MustPersist => Case is DecisionCase.Applied or DecisionCase.Released or DecisionCase.RecordedUnknownRollback or DecisionCase.DroppedStaleAttempt;
    public bool Acknowledge => Case != DecisionCase.Conflict;
}

/// <summary>
/// A participant's half of Two-Phase Commit as a deterministic state machine over its durable record:
/// none → prepared → committed | aborted, idempotent under repeats and reordering. The host persists the
/// record whenever a result says so, before it answers.
/// </summary>
public sealed class ParticipantMachine<TResource, TWork> where TResource : new()
{
    private readonly IResourceRules<TResource, TWork> _rules;
    private readonly TimeSpan _retention;

    public ParticipantMachine(IResourceRules<TResource, TWork> rules, ParticipantRecord<TResource, TWork>? record, TimeSpan decisionRetention)
    {
        _rules = rules;
        _retention = decisionRetention;
        Record = record ?? new ParticipantRecord<TResource, TWork>();
        // A copy handed to a write holds a frozen snapshot; a machine built on it needs a map it can change.
        Record.Decided = Record.Decided?.Thaw() ?? new TombstoneMap();
    }

    public ParticipantRecord<TResource, TWork> Record { get; }

    public IReadOnlyCollection<TWork> ReservedWork => Record.Prepared.Values.Select(p => p.Work).ToList();

    public ParticipantTransactionStatus StatusOf(string transactionId)
    {
        if (Record.Prepared.ContainsKey(transactionId)) return ParticipantTransactionStatus.Prepared;
        if (Record.Decided.TryGetValue(transactionId, out var d))
            return d.Outcome == Decision.Commit ? ParticipantTransactionStatus.Committed : ParticipantTransactionStatus.Aborted;
        return ParticipantTransactionStatus.Unknown;
    }

    public PrepareResult Prepare(string transactionId, string coordinator, TWork work, DateTimeOffset deadline, DateTimeOffset now)
    {
        if (_rules.CheckWork(work) is { } malformed)
            return new PrepareResult(PrepareCase.Refused, Vote.No, malformed);
        if (Record.Prepared.TryGetValue(transactionId, out var held) && held.Deadline == deadline && !_rules.SameWork(held.Work, work))
            return new PrepareResult(PrepareCase.OtherContent, Vote.No, "this transaction is prepared here with other content");
        if (VoteOfKnown(transactionId, deadline, "transaction already rolled back here") is { } known)
            return known;
        if (now > deadline)
            return new PrepareResult(PrepareCase.DeadlinePassed, Vote.No, $"prepare arrived {(now - deadline).TotalMilliseconds:0} ms after its deadline");
        var refusal = _rules.CheckReserve(Record.Resource, ReservedWork, work);
        if (refusal is not null)
            return new PrepareResult(PrepareCase.Refused, Vote.No, refusal);
        Record.Prepared[transactionId] = new PreparedTransaction<TWork> { Work = work, Coordinator = coordinator, PreparedAt = now, Deadline = deadline };
        PruneDecided(now);
        return new PrepareResult(PrepareCase.Reserved, Vote.Yes, null);
    }

    /// <summary>
    /// The vote for a transaction this participant already holds, prepared or decided (an attempt is
    /// identified by its deadline); null when it knows nothing of it.
    /// </summary>
    private PrepareResult? VoteOfKnown(string transactionId, DateTimeOffset deadline, string abortedReason)
    {
        if (Record.Prepared.TryGetValue(transactionId, out var prepared))
            return prepared.Deadline == deadline
                ? new PrepareResult(PrepareCase.AlreadyPrepared, Vote.Yes, null)
                : new PrepareResult(PrepareCase.OtherAttempt, Vote.No, "another attempt of this transaction is prepared here");
        if (Record.Decided.TryGetValue(transactionId, out var decided))
        {
            if (decided.Outcome == Decision.Abort)
                return new PrepareResult(PrepareCase.AlreadyAborted, Vote.No, abortedReason);
            return decided.Deadline == deadline
                ? new PrepareResult(PrepareCase.AlreadyCommitted, Vote.Yes, null)
                : new PrepareResult(PrepareCase.OtherAttempt, Vote.No, "another attempt of this transaction already committed here");
        }
        return null;
    }

    /// <summary>
    /// The vote for a prepare whose yes was decided earlier, once the record it relied on is durable. Under
    /// group commit other requests change the record while the write is in flight: a rollback may have
    /// released the reservation meanwhile, and then the truthful answer is no (the coordinator, which
    /// decided abort before sending that rollback, ignores it either way).
    /// </summary>
    public PrepareResult ConfirmYes(string transactionId, DateTimeOffset deadline)
    {
        return VoteOfKnown(transactionId, deadline, "transaction rolled back here while its prepare was being written")
            ?? new PrepareResult(PrepareCase.OtherAttempt, Vote.No, "reservation dropped here while its prepare was being written");
    }

    /// <summary>A copy of the record sharing nothing mutable with it (tombstones are immutable and shared): what a
    /// write hands to storage while the machine goes on changing the live record.</summary>
    public ParticipantRecord<TResource, TWork> CopyRecord() => new()
    {
        Resource = _rules.CopyResource(Record.Resource),
        Prepared = Record.Prepared.ToDictionary(p => p.Key, p => new PreparedTransaction<TWork>
        {
            Work = _rules.CopyWork(p.Value.Work),
            Coordinator = p.Value.Coordinator,
            PreparedAt = p.Value.PreparedAt,
            Deadline = p.Value.Deadline,
        }),
        // Tombstones are immutable and the map persistent: a snapshot, not a copy.
        Decided = Record.Decided.Snapshot(),
    };

    /// <param name="deadline">The deadline of the attempt that was decided; null accepts whichever is prepared.</param>
    public DecisionResult Commit(string transactionId, DateTimeOffset now, DateTimeOffset? deadline = null)
    {
        if (Record.Prepared.TryGetValue(transactionId, out var prepared))
        {
            if (deadline is not null && deadline != prepared.Deadline) return new DecisionResult(DecisionCase.OtherAttempt);
            // Applied first: if the rules refuse by throwing, the reservation is still held.
            _rules.Apply(Record.Resource, prepared.Work, transactionId, now);
            Record.Prepared.Remove(transactionId);
            Remember(transactionId, Decision.Commit, prepared.Deadline, now);
            return new DecisionResult(DecisionCase.Applied);
        }
        return StatusOf(transactionId) switch
        {
            ParticipantTransactionStatus.Committed => new DecisionResult(DecisionCase.Repeated),
            ParticipantTransactionStatus.Aborted => new DecisionResult(DecisionCase.Conflict),
            _ => new DecisionResult(DecisionCase.UnknownCommit),
        };
    }

    public DecisionResult Rollback(string transactionId, DateTimeOffset now)
    {
        // Safe whatever attempt is prepared: a rollback is only ever sent after an abort decision is
        // durable, and then no attempt of this transaction can commit.
        if (Record.Prepared.TryGetValue(transactionId, out var prepared))
        {
            _rules.Release(Record.Resource, prepared.Work, transactionId, now);
            Record.Prepared.Remove(transactionId);
            Remember(transactionId, Decision.Abort, prepared.Deadline, now);
            return new DecisionResult(DecisionCase.Released);
        }
        switch (StatusOf(transactionId))
        {
            case ParticipantTransactionStatus.Aborted: return new DecisionResult(DecisionCase.Repeated);
            case ParticipantTransactionStatus.Committed: return new DecisionResult(DecisionCase.Conflict);
        }
        Remember(transactionId, Decision.Abort, null, now);
        return new DecisionResult(DecisionCase.RecordedUnknownRollback);
    }

    /// <summary>
    /// Applies the coordinator's answer to an in-doubt inquiry. Commit applies the reservation only when
    /// the decided attempt is the prepared one; a reservation of any other attempt is dropped unapplied.
    /// </summary>
    public DecisionResult Resolve(string transactionId, Decision decision, DateTimeOffset? decidedDeadline, DateTimeOffset now)
    {
        if (decision == Decision.None) throw new ArgumentException("an inquiry answer must be a decision", nameof(decision));
        if (decision == Decision.Abort) return Rollback(transactionId, now);
        if (!Record.Prepared.TryGetValue(transactionId, out var prepared) || prepared.Deadline == decidedDeadline)
            return Commit(transactionId, now);
        _rules.Release(Record.Resource, prepared.Work, transactionId, now);
        Record.Prepared.Remove(transactionId);
        PruneDecided(now);
        return new DecisionResult(DecisionCase.DroppedStaleAttempt);
    }

    /// <summary>Prepared transactions that have waited longer than <paramref name="timeout"/> for their decision.</summary>
    public IReadOnlyList<(string TransactionId, string Coordinator)> InDoubt(DateTimeOffset now, TimeSpan timeout) => Record.Prepared
        .Where(p => now - p.Value.PreparedAt >= timeout)
        .OrderBy(p => p.Value.PreparedAt)
        .Select(p => (p.Key, p.Value.Coordinator))
        .ToList();

    private void Remember(string transactionId, Decision outcome, DateTimeOffset? deadline, DateTimeOffset now)
    {
        var latest = deadline is { } d && d > now ? d : now;
        var keepUntil = Later(latest, _retention);
        Record.Decided[transactionId] = new DecidedTransaction { Outcome = outcome, DecidedAt = now, Deadline = deadline, KeepUntil = keepUntil };
        PruneDecided(now);
    }

    /// <summary>
    /// <paramref name="time"/> + <paramref name="span"/>, held at the ends of the calendar instead of
    /// overflowing: a deadline stored by any caller or version must never make a step throw half-way.
    /// </summary>
    private static DateTimeOffset Later(DateTimeOffset time, TimeSpan span)
    {
        // In UTC: near the ends, a clock offset could push the local time out of range though UTC is not.
        time = time.ToUniversalTime();
        if (span >= TimeSpan.Zero) return span > DateTimeOffset.MaxValue - time ? DateTimeOffset.MaxValue : time + span;
        return span < DateTimeOffset.MinValue - time ? DateTimeOffset.MinValue : time + span;
    }

    /// <summary>
    /// Forget tombstones whose keep-until time has passed, at most <see cref="MaxExpiriesPerStep"/> per step, so the
    /// record stays small on a hot SKU and no step changes more than a few entries however long the participant
    /// was idle (the write that carries a step stays small). Past its keep-until time, the deadline check alone
    /// refuses a late prepare; a tombstone kept a little longer still answers for a decided transaction as it
    /// did before, which is as safe.
    /// </summary>
    private void PruneDecided(DateTimeOffset now) => Record.Decided.RemoveExpired(now, MaxExpiriesPerStep);

    /// <summary>
    /// Tombstones one step may forget. A transaction leaves one tombstone and takes at least one step here (two when
    /// it prepared here), so this keeps up with any load and works off a backlog within a few steps.
    /// </summary>
    public const int MaxExpiriesPerStep = 2;
}
