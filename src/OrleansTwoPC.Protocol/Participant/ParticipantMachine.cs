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
}

public sealed record DecisionResult(DecisionCase Case)
{
    public bool MustPersist => Case is DecisionCase.Applied or DecisionCase.Released or DecisionCase.RecordedUnknownRollback;
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
        switch (StatusOf(transactionId))
        {
            case ParticipantTransactionStatus.Prepared:
                return new PrepareResult(PrepareCase.AlreadyPrepared, Vote.Yes, null);
            case ParticipantTransactionStatus.Committed:
                return new PrepareResult(PrepareCase.AlreadyCommitted, Vote.Yes, null);
            case ParticipantTransactionStatus.Aborted:
                return new PrepareResult(PrepareCase.AlreadyAborted, Vote.No, "transaction already rolled back here");
        }
        if (now > deadline)
            return new PrepareResult(PrepareCase.DeadlinePassed, Vote.No, $"prepare arrived {(now - deadline).TotalMilliseconds:0} ms after its deadline");
        var refusal = _rules.CheckReserve(Record.Resource, ReservedWork, work);
        if (refusal is not null)
            return new PrepareResult(PrepareCase.Refused, Vote.No, refusal);
        Record.Prepared[transactionId] = new PreparedTransaction<TWork> { Work = work, Coordinator = coordinator, PreparedAt = now };
        PruneDecided(now);
        return new PrepareResult(PrepareCase.Reserved, Vote.Yes, null);
    }

    public DecisionResult Commit(string transactionId, DateTimeOffset now)
    {
        if (Record.Prepared.Remove(transactionId, out var prepared))
        {
            _rules.Apply(Record.Resource, prepared.Work, transactionId, now);
            Record.Decided[transactionId] = new DecidedTransaction { Outcome = Decision.Commit, DecidedAt = now };
            PruneDecided(now);
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
        var result = DecisionCase.RecordedUnknownRollback;
        if (Record.Prepared.Remove(transactionId, out var prepared))
        {
            _rules.Release(Record.Resource, prepared.Work, transactionId, now);
            result = DecisionCase.Released;
        }
        else
        {
            switch (StatusOf(transactionId))
            {
                case ParticipantTransactionStatus.Aborted: return new DecisionResult(DecisionCase.Repeated);
                case ParticipantTransactionStatus.Committed: return new DecisionResult(DecisionCase.Conflict);
            }
        }
        Record.Decided[transactionId] = new DecidedTransaction { Outcome = Decision.Abort, DecidedAt = now };
        PruneDecided(now);
        return new DecisionResult(result);
    }

    /// <summary>Prepared transactions that have waited longer than <paramref name="timeout"/> for their decision.</summary>
    public IReadOnlyList<(string TransactionId, string Coordinator)> InDoubt(DateTimeOffset now, TimeSpan timeout) => Record.Prepared
        .Where(p => now - p.Value.PreparedAt >= timeout)
        .OrderBy(p => p.Value.PreparedAt)
        .Select(p => (p.Key, p.Value.Coordinator))
        .ToList();

    /// <summary>Forget decisions older than the retention; called on every write so the record stays small.</summary>
    private void PruneDecided(DateTimeOffset now)
    {
        List<string>? expired = null;
        foreach (var (id, decided) in Record.Decided)
            if (now - decided.DecidedAt > _retention) (expired ??= new()).Add(id);
        if (expired is null) return;
        foreach (var id in expired) Record.Decided.Remove(id);
    }
}
