namespace OrleansTwoPC.Protocol.Coordinator;

/// <summary>
/// What the coordinator persists for one transaction. Written for the first time together with the
/// decision (presumed abort: no "begin" record is forced), then once more when every participant has
/// acknowledged. Plain settable properties so the grain storage serializer can round-trip it.
/// </summary>
public sealed class CoordinatorRecord
{
    public string TransactionId { get; set; } = "";

    /// <summary>Hash of the order's content: a resubmission with other content is rejected.</summary>
    public string Fingerprint { get; set; } = "";

    public Decision Decision { get; set; }

    /// <summary>What the transaction does (order, account, amount, lines): written with the decision at no
    /// extra cost, so operators and the invariant checker can audit every service against it.</summary>
    public OrderSummary? Order { get; set; }

    /// <summary>Why the transaction aborted (first no vote, failure or timeout); null when committed.</summary>
    public string? AbortReason { get; set; }

    public List<ParticipantEntry> Participants { get; set; } = new();

    public DateTimeOffset StartedAt { get; set; }

    /// <summary>The deadline sent with every prepare; it names this attempt (see ParticipantMachine.Resolve).</summary>
    public DateTimeOffset? PrepareDeadline { get; set; }
    public DateTimeOffset? DecidedAt { get; set; }

    /// <summary>Set once every participant acknowledged the decision: nothing is left to do.</summary>
    public DateTimeOffset? CompletedAt { get; set; }

    /// <summary>True when the record was written only to answer an inquiry about an unknown transaction
    /// (presumed abort made durable so this id can never commit later).</summary>
    public bool PresumedAbort { get; set; }

    /// <summary>True when an operator forced the abort (a heuristic decision).</summary>
    public bool Heuristic { get; set; }

    public bool IsDecided => Decision != Decision.None;
    public bool IsCompleted => CompletedAt is not null;
}

/// <summary>One participant of a transaction as the coordinator sees it.</summary>
public sealed class ParticipantEntry
{
    public string Participant { get; set; } = "";
    public Vote? Vote { get; set; }

    /// <summary>Reason given with a no vote, or what went wrong (failure, timeout).</summary>
    public string? Reason { get; set; }

    public VoteSource Source { get; set; }
    public bool Acknowledged { get; set; }

    public ParticipantId Id => ParticipantId.Parse(Participant);
}

/// <summary>How the coordinator learned (or failed to learn) a participant's vote.</summary>
public enum VoteSource
{
    Pending = 0,
    Voted = 1,
    Failed = 2,
    TimedOut = 3,
    NotAsked = 4,
}

/// <summary>The business content of a transaction, as recorded by its coordinator.</summary>
public sealed class OrderSummary
{
    public string OrderId { get; set; } = "";
    public string AccountId { get; set; } = "";

    /// <summary>Money charged to the account, in minor units.</summary>
    public long Amount { get; set; }

    public List<OrderSummaryLine> Lines { get; set; } = new();
}

public sealed class OrderSummaryLine
{
    public string Sku { get; set; } = "";
    public long Quantity { get; set; }
}
