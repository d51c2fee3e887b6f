using System.Text.Json;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;

namespace OrleansTwoPC.Protocol.Tests.Simulation;

/// <summary>Knobs of one simulated run. Rates are probabilities per message, per write or per step.</summary>
public sealed record SimulationSettings
{
    public int Transactions { get; init; } = 14;

    /// <summary>Orders placed in the quiet phase (within <see cref="LateOrderWindow"/> after the faults stop):
    /// their writes prune old tombstones while duplicate activations are still arriving.</summary>
    public int LateTransactions { get; init; } = 6;
    public TimeSpan LateOrderWindow { get; init; } = TimeSpan.FromSeconds(10);
    public int Skus { get; init; } = 4;
    public int Accounts { get; init; } = 2;

    /// <summary>Simulated time during which faults are injected; afterwards the network is reliable and nothing crashes.</summary>
    public TimeSpan FaultPhase { get; init; } = TimeSpan.FromSeconds(6);

    /// <summary>How long the quiet phase may take before the run counts as stuck (a liveness failure).</summary>
    public TimeSpan QuietPhaseLimit { get; init; } = TimeSpan.FromMinutes(3);

    public double DropRate { get; init; } = 0.05;
    public double DuplicateRate { get; init; } = 0.08;
    public double LongDelayRate { get; init; } = 0.06;
    public double CoordinatorCrashRate { get; init; } = 0.01;
    public double ParticipantCrashRate { get; init; } = 0.01;
    public double CrashBeforePersistRate { get; init; } = 0.02;
    public double CrashBeforeReplyRate { get; init; } = 0.02;
    public double WriteFailureRate { get; init; } = 0.06;
    public double PrepareCallFailureRate { get; init; } = 0.02;
    public double EarlyTimerRate { get; init; } = 0.15;
    public double LateTimerRate { get; init; } = 0.10;
    public double ClientRetryRate { get; init; } = 0.6;

    /// <summary>Per transaction: once its decision is durable, a duplicate coordinator activation (one that
    /// loaded no record) begins it again with a later deadline; its decision write (a versioned insert) fails
    /// because the record exists, but its prepares reach the participants.</summary>
    public double DuplicateActivationRate { get; init; } = 0.4;

    /// <summary>How long after the durable decision a duplicate activation may begin (long enough for tombstones to be pruned).</summary>
    public TimeSpan DuplicateActivationMaxDelay { get; init; } = TimeSpan.FromSeconds(12);

    /// <summary>Broken host, used only to prove the checks bite: phase two starts before the decision write succeeded.</summary>
    public bool BugSendDecisionBeforeItIsDurable { get; init; }

    /// <summary>Broken host, used only to prove the checks bite: a participant votes yes before its reservation is durable.</summary>
    public bool BugVoteYesBeforePrepareIsDurable { get; init; }

    /// <summary>Broken host, used only to prove the checks bite: a participant ignores which attempt a commit or an
    /// inquiry answer names (commits whatever is prepared), so a duplicate activation's reservation gets applied.</summary>
    public bool BugIgnoreAttempts { get; init; }

    public static SimulationSettings Default { get; } = new();

    public static ProtocolOptions Protocol() => new()
    {
        PrepareTimeout = TimeSpan.FromSeconds(1),
        RetryBaseDelay = TimeSpan.FromMilliseconds(20),
        RetryMaxDelay = TimeSpan.FromMilliseconds(500),
        // Short, so tombstones are pruned while late duplicates are still in flight.
        DecisionRetention = TimeSpan.FromSeconds(5),
        InDoubtTimeout = TimeSpan.FromSeconds(1.5),
    };
}

/// <summary>A broken invariant. The driver adds seed, step and the last events.</summary>
public sealed class SimulationViolation(string message) : Exception(message);

public sealed class SimulationFailure(string message, Exception? inner) : Exception(message, inner);

/// <summary>What one run did; <see cref="Digest"/> must be identical when a seed is replayed.</summary>
public sealed record SimulationReport(int Seed, int Steps, TimeSpan SimulatedTime, IReadOnlyDictionary<string, int> Stats, string Digest);

// ---------------------------------------------------------------- events and messages

internal abstract record SimEvent;
internal sealed record SubmitOrder(string Tx, bool Retry) : SimEvent;
internal sealed record Deliver(Message Message) : SimEvent;
internal sealed record PrepareTimerFired(string Tx, int Incarnation) : SimEvent;
internal sealed record AckTimedOut(string Tx, int Incarnation, ParticipantId Participant, int Attempt) : SimEvent;
internal sealed record WriteFinished(string Tx, int Incarnation, bool Completion, CoordinatorRecord Snapshot, WriteResult Result) : SimEvent;
internal sealed record ReloadCoordinator(string Tx, int Incarnation) : SimEvent;
internal sealed record RecoveryTick(string Tx, int Incarnation) : SimEvent;
internal sealed record InquirySweep : SimEvent;
internal sealed record DuplicateBegin(string Tx) : SimEvent;
internal sealed record DuplicateTimerFired(string Tx) : SimEvent;

internal enum WriteResult { Ok, FailedNotWritten, FailedButWritten }

internal abstract record Message(string Tx, ParticipantId Participant);
/// <param name="Duplicate">Sent by the duplicate activation: its vote goes back to it (the caller), not to the primary.</param>
internal sealed record PrepareMessage(string Tx, ParticipantId Participant, DateTimeOffset Deadline, bool Duplicate = false) : Message(Tx, Participant);
internal sealed record VoteMessage(string Tx, ParticipantId Participant, Vote Vote, string? Reason, bool CallFailed, bool Duplicate = false) : Message(Tx, Participant);
/// <param name="Attempt">0: the answer to an in-doubt inquiry (resolved with ParticipantMachine.Resolve); 1..n: phase two.</param>
/// <param name="Deadline">The decided attempt: the prepare deadline in the coordinator's record.</param>
internal sealed record DecisionMessage(string Tx, ParticipantId Participant, Decision Decision, int Attempt, DateTimeOffset? Deadline) : Message(Tx, Participant);
internal sealed record AckMessage(string Tx, ParticipantId Participant) : Message(Tx, Participant);
internal sealed record InquiryMessage(string Tx, ParticipantId Participant) : Message(Tx, Participant);

// ---------------------------------------------------------------- the order behind each transaction

internal sealed class TxPlan
{
    public required string Tx { get; init; }
    public required List<ParticipantId> Participants { get; init; }
    /// <summary>Quantity per SKU participant and amount for the account participant, by participant name.</summary>
    public required Dictionary<string, long> Amounts { get; init; }
    public required ShipmentDetails Shipment { get; init; }
}

// ---------------------------------------------------------------- durable copies

internal static class Durable
{
    private static readonly JsonSerializerOptions Options = new();

    /// <summary>What a write followed by a read returns: a deep copy that shares nothing with the live object.</summary>
    public static T Copy<T>(T value) => JsonSerializer.Deserialize<T>(JsonSerializer.Serialize(value, Options), Options)!;
}

// ---------------------------------------------------------------- participant host

/// <summary>A participant grain as the simulation sees it: a live machine plus the last durable record.</summary>
internal abstract class SimParticipant(ParticipantId id)
{
    public ParticipantId Id { get; } = id;
    public string Name { get; } = id.ToString();

    public abstract PrepareResult Prepare(string tx, DateTimeOffset deadline, DateTimeOffset now);
    /// <param name="inquiryAnswer">True for the answer to an in-doubt inquiry, false for a phase-two message.</param>
    public abstract DecisionResult Apply(string tx, Decision decision, DateTimeOffset? deadline, bool inquiryAnswer, bool ignoreAttempts, DateTimeOffset now);
    public abstract IReadOnlyList<(string TransactionId, string Coordinator)> InDoubt(DateTimeOffset now, TimeSpan timeout);
    public abstract ParticipantTransactionStatus DurableStatus(string tx);

    /// <summary>Write the live record; returns the decided transactions as now durable.</summary>
    public abstract IEnumerable<KeyValuePair<string, DecidedTransaction>> Persist();

    /// <summary>Lose everything not written: rebuild the machine from the durable record.</summary>
    public abstract void Crash();

    public abstract int LivePrepared { get; }
    public abstract int DurablePrepared { get; }

    /// <summary>Resource and tombstone invariants over the live and the durable record.</summary>
    public abstract void Check(Func<string, Decision> durableDecision);

    /// <summary>End of run: conservation against the transactions this participant durably committed.</summary>
    public abstract void CheckFinal(Func<string, Decision> durableDecision, IReadOnlyCollection<string> committedHere);

    public abstract string Describe();
}

internal sealed class SimParticipant<TResource, TWork>(
    ParticipantId id,
    IResourceRules<TResource, TWork> rules,
    TResource initial,
    Func<string, TWork> workOf,
    TimeSpan retention,
    Action<string, TResource, IReadOnlyCollection<TWork>, Func<string, Decision>> checkResource,
    Action<TResource, IReadOnlyCollection<string>, Func<string, Decision>> checkFinal,
    Func<TResource, string> describe) : SimParticipant(id)
    where TResource : new()
{
    private ParticipantRecord<TResource, TWork> _durable = new() { Resource = initial };
    private ParticipantMachine<TResource, TWork> _machine = new(rules, new ParticipantRecord<TResource, TWork> { Resource = Durable.Copy(initial) }, retention);

    public override PrepareResult Prepare(string tx, DateTimeOffset deadline, DateTimeOffset now) =>
        _machine.Prepare(tx, coordinator: tx, workOf(tx), deadline, now);

    public override DecisionResult Apply(string tx, Decision decision, DateTimeOffset? deadline, bool inquiryAnswer, bool ignoreAttempts, DateTimeOffset now)
    {
        // Like ParticipantGrain: phase two calls Commit with the record's deadline, an inquiry answer Resolve.
        if (ignoreAttempts) return decision == Decision.Commit ? _machine.Commit(tx, now) : _machine.Rollback(tx, now);
        if (inquiryAnswer) return _machine.Resolve(tx, decision, deadline, now);
        return decision == Decision.Commit ? _machine.Commit(tx, now, deadline) : _machine.Rollback(tx, now);
    }

    public override IReadOnlyList<(string TransactionId, string Coordinator)> InDoubt(DateTimeOffset now, TimeSpan timeout) => _machine.InDoubt(now, timeout);

    public override ParticipantTransactionStatus DurableStatus(string tx)
    {
        if (_durable.Prepared.ContainsKey(tx)) return ParticipantTransactionStatus.Prepared;
        if (_durable.Decided.TryGetValue(tx, out var d)) return d.Outcome == Decision.Commit ? ParticipantTransactionStatus.Committed : ParticipantTransactionStatus.Aborted;
        return ParticipantTransactionStatus.Unknown;
    }

    public override IEnumerable<KeyValuePair<string, DecidedTransaction>> Persist()
    {
        _durable = Durable.Copy(_machine.Record);
        return _durable.Decided;
    }

    public override void Crash() => _machine = new ParticipantMachine<TResource, TWork>(rules, Durable.Copy(_durable), retention);

    public override int LivePrepared => _machine.Record.Prepared.Count;
    public override int DurablePrepared => _durable.Prepared.Count;

    public override void Check(Func<string, Decision> durableDecision)
    {
        CheckRecord("live", _machine.Record, durableDecision);
        CheckRecord("durable", _durable, durableDecision);
    }

    private void CheckRecord(string which, ParticipantRecord<TResource, TWork> record, Func<string, Decision> durableDecision)
    {
        foreach (var (tx, decided) in record.Decided)
        {
            var coordinator = durableDecision(tx);
            if (decided.Outcome != coordinator)
                throw new SimulationViolation($"{Name} ({which}) holds {tx} as {decided.Outcome} but its coordinator's durable decision is {coordinator}");
        }
        foreach (var tx in record.Prepared.Keys)
            if (record.Decided.ContainsKey(tx))
                throw new SimulationViolation($"{Name} ({which}) holds {tx} both prepared and decided");
        checkResource($"{Name} ({which})", record.Resource, record.Prepared.Values.Select(p => p.Work).ToList(), durableDecision);
    }

    public override void CheckFinal(Func<string, Decision> durableDecision, IReadOnlyCollection<string> committedHere)
    {
        if (_durable.Prepared.Count > 0 || _machine.Record.Prepared.Count > 0)
            throw new SimulationViolation($"{Name} still holds prepared transactions: {string.Join(", ", _durable.Prepared.Keys.Concat(_machine.Record.Prepared.Keys).Distinct())}");
        checkFinal(_durable.Resource, committedHere, durableDecision);
    }

    public override string Describe() =>
        $"{Name}: {describe(_durable.Resource)}; prepared [{string.Join(",", _durable.Prepared.Keys)}]; decided [{string.Join(",", _durable.Decided.Select(d => $"{d.Key}={d.Value.Outcome}"))}]";
}

// ---------------------------------------------------------------- coordinator host

/// <summary>A coordinator grain as the simulation sees it: the live machine, the durable record, and the client.</summary>
internal sealed class SimCoordinator(string tx, TxPlan plan, ProtocolOptions options)
{
    public string Tx { get; } = tx;
    public TxPlan Plan { get; } = plan;
    public CoordinatorMachine Machine { get; set; } = new(tx, options, null);
    public CoordinatorRecord? DurableRecord { get; set; }
    public Decision DurableDecision { get; set; }
    public int Incarnation { get; set; }
    public CoordinatorRecord? WriteInFlight { get; set; }

    /// <summary>The client placed the order and has not been answered yet.</summary>
    public bool ClientWaiting { get; set; }

    public List<Decision> Replies { get; } = new();
    public int Begins { get; set; }
}

/// <summary>
/// A duplicate activation of a coordinator (e.g. after a directory partition): a second machine for the same
/// transaction that loaded no record and begins again with a later deadline. Its votes come back to it; its
/// decision write is a versioned insert, refused because the primary's record exists; then it deactivates.
/// </summary>
internal sealed class SimDuplicate(string tx, ProtocolOptions options)
{
    public string Tx { get; } = tx;
    public CoordinatorMachine Machine { get; } = new(tx, options, null);
    public bool Active { get; set; } = true;
}
