using OrleansTwoPC.Protocol.Participant;

namespace OrleansTwoPC.Protocol.Coordinator;

public enum CoordinatorPhase
{
    /// <summary>No record and nothing in flight: an inquiry here is answered by presumed abort.</summary>
    Idle,
    /// <summary>Prepares sent, votes being collected. Nothing durable yet.</summary>
    Preparing,
    /// <summary>Decision chosen, its versioned write in flight. Nobody hears it yet.</summary>
    Deciding,
    /// <summary>Decision durable; phase two delivering it until every participant acknowledges.</summary>
    Decided,
    /// <summary>All acknowledged, completion write in flight.</summary>
    Completing,
    /// <summary>Nothing left to do.</summary>
    Completed,
    /// <summary>The decision write failed and its fate is unknown: the host must reload the record.</summary>
    InDoubt,
}

/// <summary>Answer to a participant (or operator) asking how a transaction ended.</summary>
public sealed record InquiryResult(Decision Decision, IReadOnlyList<CoordinatorAction> Actions)
{
    /// <summary>Still deciding: ask again later.</summary>
    public bool Pending => Decision == Decision.None;
}

/// <summary>
/// The coordinator's half of Two-Phase Commit with presumed abort, as a deterministic state machine.
/// It owns the record, decides, and returns the I/O its host must perform; it never does I/O itself and
/// takes the time as an input.
/// </summary>
public sealed class CoordinatorMachine
{
    private static readonly IReadOnlyList<CoordinatorAction> Nothing = Array.Empty<CoordinatorAction>();
    private readonly ProtocolOptions _options;

    public CoordinatorMachine(string transactionId, ProtocolOptions options, CoordinatorRecord? persisted)
    {
        if (string.IsNullOrWhiteSpace(transactionId)) throw new ArgumentException("transaction id is blank", nameof(transactionId));
        if (persisted is not null && persisted.TransactionId != transactionId)
            throw new ArgumentException($"record of {persisted.TransactionId} given to coordinator of {transactionId}", nameof(persisted));
        _options = options;
        TransactionId = transactionId;
        Record = persisted ?? new CoordinatorRecord { TransactionId = transactionId };
        Phase = persisted switch
        {
            null => CoordinatorPhase.Idle,
            { IsCompleted: true } => CoordinatorPhase.Completed,
            { IsDecided: true } => CoordinatorPhase.Decided,
            // A record is only ever written with a decision; one without is treated as absent.
            _ => CoordinatorPhase.Idle,
        };
    }

    public string TransactionId { get; }
    public CoordinatorRecord Record { get; private set; }
    public CoordinatorPhase Phase { get; private set; }

    /// <summary>Start phase one: send every prepare in parallel with one shared deadline.</summary>
    public IReadOnlyList<CoordinatorAction> Begin(string fingerprint, IReadOnlyList<ParticipantId> participants, DateTimeOffset now, OrderSummary? order = null)
    {
        if (Phase != CoordinatorPhase.Idle)
            throw new InvalidOperationException($"transaction {TransactionId} already begun (phase {Phase})");
        if (participants.Count == 0)
            throw new ArgumentException("a transaction needs at least one participant", nameof(participants));
        if (participants.Distinct().Count() != participants.Count)
            throw new ArgumentException("participants must be distinct", nameof(participants));

        Record = new CoordinatorRecord
        {
            TransactionId = TransactionId,
            Fingerprint = fingerprint,
            Order = order,
            StartedAt = now,
            Participants = participants.Select(p => new ParticipantEntry { Participant = p.ToString() }).ToList(),
        };
        Phase = CoordinatorPhase.Preparing;
        var deadline = now + _options.PrepareTimeout;
        Record.PrepareDeadline = deadline;
        var actions = new List<CoordinatorAction>(participants.Count + 1);
        actions.AddRange(participants.Select(p => new SendPrepare(p, deadline)));
        actions.Add(new StartPrepareTimer(deadline));
        return actions;
    }

    /// <remarks>
    /// A no vote saying the resource does not exist (<see cref="Refusals.UnknownResource"/>) makes the order
    /// invalid rather than aborted: the machine then waits for every vote (or the deadline) so that the
    /// rejection names every unknown resource, and ends in <see cref="RejectOrder"/> instead of a decision.
    /// A vote answers the prepare of one attempt, named by its deadline (<paramref name="deadline"/>, the one in
    /// <see cref="SendPrepare"/>): a vote for another attempt (an earlier activation's prepare) is ignored,
    /// because that attempt's reservation is not this attempt's and a commit would apply nothing. Null
    /// leaves the binding to the host (a vote taken only as the reply of this activation's own call).
    /// </remarks>
    public IReadOnlyList<CoordinatorAction> OnVote(ParticipantId participant, Vote vote, string? reason, DateTimeOffset now, DateTimeOffset? deadline = null)
    {
        var entry = PendingEntry(participant);
        if (entry is null) return Nothing; // late, duplicate or unknown: the decision no longer depends on it
        if (deadline is not null && deadline != Record.PrepareDeadline) return Nothing; // another attempt's vote
        entry.Vote = vote;
        entry.Reason = reason;
        entry.Source = VoteSource.Voted;
        if (NamesUnknownResource) return RejectOnceAllAnswered();
        if (vote == Vote.No)
            return Decide(Decision.Abort, $"{participant} voted no: {reason ?? "no reason given"}", now);
        return Record.Participants.All(p => p.Vote == Vote.Yes) ? Decide(Decision.Commit, null, now) : Nothing;
    }

    /// <summary>The prepare call itself failed (exception, unreachable): counts as a no vote.</summary>
    public IReadOnlyList<CoordinatorAction> OnPrepareFailed(ParticipantId participant, string error, DateTimeOffset now)
    {
        var entry = PendingEntry(participant);
        if (entry is null) return Nothing;
        entry.Reason = error;
        entry.Source = VoteSource.Failed;
        if (NamesUnknownResource) return RejectOnceAllAnswered();
        return Decide(Decision.Abort, $"{participant} failed to prepare: {error}", now);
    }

    /// <summary>The prepare deadline passed: abort at once, without waiting for the slow ones.</summary>
    public IReadOnlyList<CoordinatorAction> OnPrepareDeadline(DateTimeOffset now)
    {
        if (Phase != CoordinatorPhase.Preparing) return Nothing;
        var silent = Record.Participants.Where(p => p.Source == VoteSource.Pending).ToList();
        foreach (var p in silent)
        {
            p.Source = VoteSource.TimedOut;
            p.Reason = $"no vote within {_options.PrepareTimeout.TotalMilliseconds:0} ms";
        }
        if (NamesUnknownResource) return RejectOnceAllAnswered();
        return Decide(Decision.Abort, $"prepare timed out waiting for {string.Join(", ", silent.Select(p => p.Participant))}", now);
    }

    public IReadOnlyList<CoordinatorAction> OnDecisionPersisted()
    {
        if (Phase != CoordinatorPhase.Deciding)
            throw new InvalidOperationException($"no decision write in flight (phase {Phase})");
        // A presumed-abort record is written already complete: there is nobody to tell.
        Phase = Record.IsCompleted ? CoordinatorPhase.Completed : CoordinatorPhase.Decided;
        var actions = new List<CoordinatorAction>(Record.Participants.Count + 1);
        if (!Record.PresumedAbort) actions.Add(new ReplyToClient(Outcome()));
        actions.AddRange(DecisionsToSend());
        return actions;
    }

    /// <summary>The decision write failed; it may or may not have reached the disk, so nothing may be sent.</summary>
    public void OnDecisionPersistFailed()
    {
        if (Phase != CoordinatorPhase.Deciding)
            throw new InvalidOperationException($"no decision write in flight (phase {Phase})");
        Phase = CoordinatorPhase.InDoubt;
    }

    public IReadOnlyList<CoordinatorAction> OnDecisionAcknowledged(ParticipantId participant, DateTimeOffset now)
    {
        if (Phase != CoordinatorPhase.Decided) return Nothing;
        var entry = Find(participant);
        if (entry is null || entry.Acknowledged) return Nothing;
        entry.Acknowledged = true;
        if (!Record.Participants.All(p => p.Acknowledged)) return Nothing;
        Record.CompletedAt = now;
        Phase = CoordinatorPhase.Completing;
        return new CoordinatorAction[] { new PersistCompletion() };
    }

    /// <summary>A phase-two send failed: send again after a capped exponential backoff.</summary>
    public IReadOnlyList<CoordinatorAction> OnDecisionDeliveryFailed(ParticipantId participant, int attempt)
    {
        if (Phase != CoordinatorPhase.Decided) return Nothing;
        var entry = Find(participant);
        if (entry is null || entry.Acknowledged) return Nothing;
        return new CoordinatorAction[] { new SendDecision(participant, Record.Decision, attempt + 1, _options.RetryDelay(attempt)) };
    }

    public void OnCompletionPersisted()
    {
        if (Phase == CoordinatorPhase.Completing) Phase = CoordinatorPhase.Completed;
    }

    /// <summary>The completion write failed: harmless, the decision is still durable; recovery finishes later.</summary>
    public void OnCompletionPersistFailed()
    {
        if (Phase != CoordinatorPhase.Completing) return;
        Record.CompletedAt = null;
        Phase = CoordinatorPhase.Decided;
    }

    /// <summary>After a restart (or a recovery tick): re-send the durable decision to whoever has not
    /// acknowledged, or, when everybody has, write the completion that is still missing.</summary>
    public IReadOnlyList<CoordinatorAction> Resume(DateTimeOffset now)
    {
        if (Phase == CoordinatorPhase.Decided && Record.Participants.All(p => p.Acknowledged))
        {
            Record.CompletedAt = now;
            Phase = CoordinatorPhase.Completing;
        }
        if (Phase == CoordinatorPhase.Decided) return DecisionsToSend();
        if (Phase == CoordinatorPhase.Completing) return new CoordinatorAction[] { new PersistCompletion() };
        return Nothing;
    }

    /// <summary>
    /// Someone asks how the transaction ended. With no record and nothing in flight the answer is abort
    /// (presumed abort), made durable first so this transaction id can never commit afterwards.
    /// </summary>
    public InquiryResult OnInquiry(DateTimeOffset now)
    {
        switch (Phase)
        {
            case CoordinatorPhase.Idle:
                return new InquiryResult(Decision.None, PresumeAbort("presumed abort: the coordinator has no record of this transaction", heuristic: false, now));
            case CoordinatorPhase.Decided or CoordinatorPhase.Completing or CoordinatorPhase.Completed:
                return new InquiryResult(Record.Decision, Nothing);
            default:
                return new InquiryResult(Decision.None, Nothing);
        }
    }

    /// <summary>
    /// An operator forces ABORT. Allowed only while no decision is durable (and nothing is in flight in
    /// this activation); a no-op for an aborted transaction; refused for a committed one.
    /// </summary>
    public IReadOnlyList<CoordinatorAction> HeuristicAbort(string reason, DateTimeOffset now)
    {
        switch (Phase)
        {
            case CoordinatorPhase.Idle:
                return PresumeAbort($"heuristic abort by an operator: {reason}", heuristic: true, now);
            case CoordinatorPhase.Decided or CoordinatorPhase.Completing or CoordinatorPhase.Completed when Record.Decision == Decision.Abort:
                return Nothing;
            case CoordinatorPhase.Decided or CoordinatorPhase.Completing or CoordinatorPhase.Completed:
                throw new InvalidOperationException($"{TransactionId} is committed; a committed transaction cannot be aborted");
            default:
                throw new InvalidOperationException($"{TransactionId} is {Phase}; retry once its decision is known");
        }
    }

    /// <summary>An abort record with no participants, complete at once: there is nobody this coordinator must tell.</summary>
    private IReadOnlyList<CoordinatorAction> PresumeAbort(string reason, bool heuristic, DateTimeOffset now)
    {
        Record = new CoordinatorRecord { TransactionId = TransactionId, StartedAt = now, PresumedAbort = true, Heuristic = heuristic, CompletedAt = now };
        return Decide(Decision.Abort, reason, now);
    }

    public TransactionOutcome Outcome() => new(
        Record.TransactionId,
        Record.Decision,
        Record.AbortReason,
        Record.Participants.Select(p => new ParticipantVoteReport(p.Participant, p.Vote, p.Source, p.Reason)).ToList());

    private bool NamesUnknownResource => Record.Participants.Any(IsUnknownResource);

    private static bool IsUnknownResource(ParticipantEntry entry) =>
        entry is { Source: VoteSource.Voted, Vote: Vote.No, Reason: Refusals.UnknownResource };

    /// <summary>
    /// Ends phase one without a decision once nobody's vote is pending: the reason names the unknown
    /// resources of the first kind among them (SKUs before the account, in the order's line order, as the
    /// check before any prepare used to); everybody who may hold a reservation (voted yes, failed, timed
    /// out) is to be rolled back. The record is dropped, so nothing about this attempt is ever written.
    /// </summary>
    private IReadOnlyList<CoordinatorAction> RejectOnceAllAnswered()
    {
        if (Record.Participants.Any(p => p.Source == VoteSource.Pending)) return Nothing;
        var unknown = Record.Participants.Where(IsUnknownResource).Select(p => p.Id).ToList();
        var kind = unknown.Min(p => p.Kind);
        var reason = $"unknown {Noun(kind)} {string.Join(", ", unknown.Where(p => p.Kind == kind).Select(p => p.Key))}";
        var rollBack = Record.Participants
            .Where(p => !(p.Source == VoteSource.Voted && p.Vote == Vote.No))
            .Select(p => p.Id)
            .ToList();
        Record = new CoordinatorRecord { TransactionId = TransactionId };
        Phase = CoordinatorPhase.Idle;
        return new CoordinatorAction[] { new RejectOrder(reason, rollBack) };
    }

    private static string Noun(ParticipantKind kind) => kind switch
    {
        ParticipantKind.Inventory => "SKU",
        ParticipantKind.Payment => "account",
        _ => kind.ToString().ToLowerInvariant(),
    };

    private IReadOnlyList<CoordinatorAction> Decide(Decision decision, string? reason, DateTimeOffset now)
    {
        Record.Decision = decision;
        Record.AbortReason = reason;
        Record.DecidedAt = now;
        Phase = CoordinatorPhase.Deciding;
        return new CoordinatorAction[] { new PersistDecision(decision) };
    }

    private IReadOnlyList<CoordinatorAction> DecisionsToSend() => Record.Participants
        .Where(p => !p.Acknowledged)
        .Select(p => (CoordinatorAction)new SendDecision(p.Id, Record.Decision, 1, TimeSpan.Zero))
        .ToList();

    private ParticipantEntry? PendingEntry(ParticipantId participant)
    {
        if (Phase != CoordinatorPhase.Preparing) return null;
        var entry = Find(participant);
        return entry is { Source: VoteSource.Pending } ? entry : null;
    }

    private ParticipantEntry? Find(ParticipantId participant)
    {
        var key = participant.ToString();
        return Record.Participants.FirstOrDefault(p => p.Participant == key);
    }
}
