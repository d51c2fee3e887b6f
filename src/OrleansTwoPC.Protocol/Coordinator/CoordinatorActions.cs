namespace OrleansTwoPC.Protocol.Coordinator;

/// <summary>What the coordinator core asks its host to do. The host performs the I/O and feeds the result back.</summary>
public abstract record CoordinatorAction;

/// <summary>Phase one: ask a participant to prepare; it must refuse once the deadline has passed.</summary>
public sealed record SendPrepare(ParticipantId Participant, DateTimeOffset Deadline) : CoordinatorAction;

/// <summary>Wake the core with <see cref="CoordinatorMachine.OnPrepareDeadline"/> at this time.</summary>
public sealed record StartPrepareTimer(DateTimeOffset Deadline) : CoordinatorAction;

/// <summary>Write the record with its decision (versioned write). Nobody may hear the decision before it succeeds.</summary>
public sealed record PersistDecision(Decision Decision) : CoordinatorAction;

/// <summary>Answer the caller: the decision is durable.</summary>
public sealed record ReplyToClient(TransactionOutcome Outcome) : CoordinatorAction;

/// <summary>Phase two: deliver the decision to one participant (attempt 1 is the first send).</summary>
public sealed record SendDecision(ParticipantId Participant, Decision Decision, int Attempt, TimeSpan Delay) : CoordinatorAction;

/// <summary>Every participant acknowledged: write the record once more as completed.</summary>
public sealed record PersistCompletion : CoordinatorAction;

/// <summary>
/// No transaction after all: a participant reported that the order names a resource that does not exist.
/// Nothing was decided and nothing is written (presumed abort: an inquiry finds no record and is answered
/// abort). Roll back, best effort, whoever may hold a reservation, then answer the caller Rejected. The
/// machine is idle again: a resubmission begins a new attempt, which the participants rolled back here
/// refuse (their tombstone), so a corrected order needs a new order id.
/// </summary>
public sealed record RejectOrder(string Reason, IReadOnlyList<ParticipantId> RollBack) : CoordinatorAction;
