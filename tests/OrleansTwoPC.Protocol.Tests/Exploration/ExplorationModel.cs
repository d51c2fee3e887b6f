using System.Globalization;
using System.Reflection;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;

namespace OrleansTwoPC.Protocol.Tests.Exploration;

/// <summary>How many faults of each kind one explored path may contain.</summary>
public sealed record FaultBudgets(
    int CoordinatorCrashes,
    int ParticipantCrashes,
    int Drops,
    int Duplicates,
    int WriteFailures,
    int Resubmits,
    int DuplicateActivations)
{
    public override string ToString() =>
        $"coordinator crashes {CoordinatorCrashes}, participant crashes {ParticipantCrashes}, drops {Drops}, duplicates {Duplicates}, " +
        $"write failures {WriteFailures}, resubmissions {Resubmits}, duplicate activations {DuplicateActivations}";
}

/// <summary>Broken hosts (or wrongly configured machines), each used only to prove that the explorer's checks bite.</summary>
[Flags]
public enum PlantedBug
{
    None = 0,
    /// <summary>Phase two starts when the decision write starts, not when it succeeded (the simulation's first).</summary>
    SendDecisionBeforeItIsDurable = 1 << 0,
    /// <summary>A participant votes yes without writing its reservation (the simulation's second).</summary>
    VoteYesBeforePrepareIsDurable = 1 << 1,
    /// <summary>A participant commits or rolls back whatever attempt is prepared (the simulation's third).</summary>
    IgnoreAttempts = 1 << 2,
    /// <summary>The host tells the machine the decision is durable as soon as the write is issued.</summary>
    DecisionNotForcedBeforePhaseTwo = 1 << 3,
    /// <summary>A restarted participant reloads its record without its prepared transactions.</summary>
    ForgetPrepareOnRestart = 1 << 4,
    /// <summary>A coordinator with no record answers an inquiry with commit.</summary>
    PresumedCommit = 1 << 5,
    /// <summary>A participant drops its abort tombstone before a prepare, so a late prepare reserves again.</summary>
    LatePrepareAcceptedAfterRollback = 1 << 6,
    /// <summary>A participant acknowledges a decision without writing its outcome.</summary>
    AcknowledgeBeforeOutcomeIsDurable = 1 << 7,
    /// <summary>The participant machine is given a negative retention: tombstones go before their retention ends.</summary>
    TombstonePrunedBeforeRetention = 1 << 8,
    /// <summary>The host hands a vote to the machine without the deadline of the prepare it answers. Votes reach
    /// whichever activation is current, so an old attempt's yes would commit a new attempt that nobody prepared.</summary>
    VoteNotBoundToItsAttempt = 1 << 9,
}

/// <summary>A broken property; the explorer adds the shortest trace that leads to it.</summary>
public sealed class ExplorationViolation(string message) : Exception(message);

public enum MessageKind { Prepare, Vote, Decision, Ack, Inquiry }

/// <summary>A message in flight. <see cref="Duplicate"/> marks the traffic of a duplicate coordinator activation;
/// a decision with <see cref="Attempt"/> 0 is the answer to an in-doubt inquiry.</summary>
public sealed record ExMessage(
    MessageKind Kind,
    string Tx,
    string Participant,
    DateTimeOffset? Deadline = null,
    Vote Vote = Vote.Yes,
    string? Reason = null,
    Decision Decision = Decision.None,
    int Attempt = 0,
    bool Duplicate = false)
{
    /// <summary>The reason's words do not change what happens next; only an unknown resource does.</summary>
    public string Key { get; } = $"{Kind}|{Tx}|{Participant}|{Deadline?.UtcTicks}|{Vote}|{Reason == Refusals.UnknownResource}|{Decision}|{Attempt}|{Duplicate}";

    /// <summary>The key hashed once, at send: what a state's canonical form holds for this message.</summary>
    public UInt128 Id => _id ??= Hash128.Of(System.Runtime.InteropServices.MemoryMarshal.AsBytes(Key.AsSpan()));

    private UInt128? _id;

    /// <summary>The <see cref="Id"/> of this message sent to the other participant of <paramref name="swap"/>.</summary>
    internal UInt128 IdUnder(Swap swap) => _swappedId ??= swap.Other(Participant) is { } other
        ? new ExMessage(Kind, Tx, other, Deadline, Vote, Reason, Decision, Attempt, Duplicate).Id
        : Id;

    private UInt128? _swappedId; // a scope has one swap at most

    public string Describe(DateTimeOffset epoch) => Kind switch
    {
        MessageKind.Prepare => $"prepare {Tx} (deadline t={Ms(Deadline, epoch)}) to {Participant}{(Duplicate ? " from the duplicate activation" : "")}",
        MessageKind.Vote => $"{Participant} votes {Vote.ToString().ToLowerInvariant()} on {Tx}{(Reason is null ? "" : $" ({Reason})")}{(Duplicate ? " to the duplicate activation" : "")}",
        MessageKind.Decision when Attempt == 0 => $"inquiry answer {Decision.ToString().ToLowerInvariant()} for {Tx} to {Participant}",
        MessageKind.Decision => $"{Decision.ToString().ToLowerInvariant()} {Tx} (attempt {Attempt}, deadline t={Ms(Deadline, epoch)}) to {Participant}",
        MessageKind.Ack => $"{Participant} acknowledges {Tx}",
        _ => $"{Participant} asks how {Tx} ended",
    };

    internal static string Ms(DateTimeOffset? time, DateTimeOffset epoch) =>
        time is { } t ? ((t - epoch).TotalMilliseconds).ToString("0", CultureInfo.InvariantCulture) + "ms" : "none";
}

// ---------------------------------------------------------------- participants

/// <summary>A participant grain as the explorer sees it: the live machine and the last durable record.</summary>
internal abstract class ExParticipant(ParticipantId id)
{
    public ParticipantId Id { get; } = id;
    public string Name { get; } = id.ToString();

    public abstract ExParticipant Clone();
    public abstract PrepareResult Prepare(string tx, DateTimeOffset deadline, DateTimeOffset now, PlantedBug bugs);
    public abstract DecisionResult Apply(string tx, Decision decision, DateTimeOffset? deadline, bool inquiryAnswer, PlantedBug bugs, DateTimeOffset now);
    public abstract void Persist();

    /// <summary>Volatile state lost: the machine is rebuilt from the durable record.</summary>
    public abstract void Restart(PlantedBug bugs);

    public abstract IEnumerable<(string Tx, DateTimeOffset PreparedAt, DateTimeOffset Deadline)> LivePrepared { get; }
    public abstract IEnumerable<(string Tx, DateTimeOffset Deadline)> DurablePrepared { get; }
    public abstract IEnumerable<(string Tx, Decision Outcome, DateTimeOffset KeepUntil)> DurableDecided { get; }
    public abstract ParticipantTransactionStatus DurableStatus(string tx);
    public abstract void Check();
    /// <summary>Writes the part's form. With <paramref name="inDoubtBy"/>, the start of a reservation already in doubt
    /// by then is left out (see <see cref="Reductions.PastInDoubtTimes"/>).</summary>
    public abstract void WriteKey(StateKey key, DateTimeOffset? inDoubtBy = null);
    public abstract string Describe(DateTimeOffset epoch);
}

internal sealed class ExParticipant<TResource, TWork> : ExParticipant where TResource : new()
{
    private readonly IResourceRules<TResource, TWork> _rules;
    private readonly Func<string, TWork> _workOf;
    private readonly TimeSpan _retention;
    private readonly Func<TResource, string> _describe;
    private readonly Action<StateKey, TResource> _resourceKey;
    private readonly Action<string, TResource, IReadOnlyCollection<TWork>> _check;
    private ParticipantMachine<TResource, TWork> _machine;
    private bool _machineShared; // a clone shares the machine until one of them changes it
    private ParticipantRecord<TResource, TWork> _durable; // never mutated: replaced by a copy on every write

    public ExParticipant(
        ParticipantId id,
        IResourceRules<TResource, TWork> rules,
        TResource initial,
        Func<string, TWork> workOf,
        TimeSpan retention,
        Func<TResource, string> describe,
        Action<StateKey, TResource> resourceKey,
        Action<string, TResource, IReadOnlyCollection<TWork>> check) : base(id)
    {
        _rules = rules;
        _workOf = workOf;
        _retention = retention;
        _describe = describe;
        _resourceKey = resourceKey;
        _check = check;
        _durable = new ParticipantRecord<TResource, TWork> { Resource = initial };
        _machine = new ParticipantMachine<TResource, TWork>(rules, CopyOf(_durable), retention);
    }

    private ExParticipant(ExParticipant<TResource, TWork> other) : base(other.Id)
    {
        _rules = other._rules;
        _workOf = other._workOf;
        _retention = other._retention;
        _describe = other._describe;
        _resourceKey = other._resourceKey;
        _check = other._check;
        _durable = other._durable;
        _machine = other._machine;
        _machineShared = other._machineShared = true;
    }

    /// <summary>The machine, to be changed: copied first while a clone shares it.</summary>
    private ParticipantMachine<TResource, TWork> Own()
    {
        if (!_machineShared) return _machine;
        _machine = new ParticipantMachine<TResource, TWork>(_rules, _machine.CopyRecord(), _retention);
        _machineShared = false;
        return _machine;
    }

    public override ExParticipant Clone() => new ExParticipant<TResource, TWork>(this);

    private ParticipantRecord<TResource, TWork> CopyOf(ParticipantRecord<TResource, TWork> record) =>
        new ParticipantMachine<TResource, TWork>(_rules, record, _retention).CopyRecord();

    public override PrepareResult Prepare(string tx, DateTimeOffset deadline, DateTimeOffset now, PlantedBug bugs)
    {
        var machine = Own();
        if (bugs.HasFlag(PlantedBug.LatePrepareAcceptedAfterRollback)
            && machine.Record.Decided.TryGetValue(tx, out var decided) && decided.Outcome == Decision.Abort)
            machine.Record.Decided.Remove(tx);
        return machine.Prepare(tx, coordinator: tx, _workOf(tx), deadline, now);
    }

    public override DecisionResult Apply(string tx, Decision decision, DateTimeOffset? deadline, bool inquiryAnswer, PlantedBug bugs, DateTimeOffset now)
    {
        // Like ParticipantGrain: phase two calls Commit with the record's deadline, an inquiry answer Resolve.
        var machine = Own();
        if (bugs.HasFlag(PlantedBug.IgnoreAttempts)) return decision == Decision.Commit ? machine.Commit(tx, now) : machine.Rollback(tx, now);
        if (inquiryAnswer) return machine.Resolve(tx, decision, deadline, now);
        return decision == Decision.Commit ? machine.Commit(tx, now, deadline) : machine.Rollback(tx, now);
    }

    public override void Persist() => _durable = _machine.CopyRecord();

    public override void Restart(PlantedBug bugs)
    {
        var reloaded = CopyOf(_durable);
        if (bugs.HasFlag(PlantedBug.ForgetPrepareOnRestart)) reloaded.Prepared.Clear();
        _machine = new ParticipantMachine<TResource, TWork>(_rules, reloaded, _retention);
        _machineShared = false;
    }

    /// <summary>In transaction order, so that the events enabled in a state follow from its form alone (a trace is
    /// kept as the position of each event among those enabled).</summary>
    public override IEnumerable<(string Tx, DateTimeOffset PreparedAt, DateTimeOffset Deadline)> LivePrepared =>
        Sorted(_machine.Record.Prepared).Select(p => (p.Key, p.Value.PreparedAt, p.Value.Deadline));

    public override IEnumerable<(string Tx, DateTimeOffset Deadline)> DurablePrepared => _durable.Prepared.Select(p => (p.Key, p.Value.Deadline));

    public override IEnumerable<(string Tx, Decision Outcome, DateTimeOffset KeepUntil)> DurableDecided =>
        _durable.Decided.Select(d => (d.Key, d.Value.Outcome, d.Value.KeepUntil));

    public override ParticipantTransactionStatus DurableStatus(string tx)
    {
        if (_durable.Prepared.ContainsKey(tx)) return ParticipantTransactionStatus.Prepared;
        if (_durable.Decided.TryGetValue(tx, out var d)) return d.Outcome == Decision.Commit ? ParticipantTransactionStatus.Committed : ParticipantTransactionStatus.Aborted;
        return ParticipantTransactionStatus.Unknown;
    }

    public override void Check()
    {
        foreach (var (which, record) in new[] { ("live", _machine.Record), ("durable", _durable) })
        {
            foreach (var tx in record.Prepared.Keys)
                if (record.Decided.ContainsKey(tx))
                    throw new ExplorationViolation($"{Name} ({which}) holds {tx} both prepared and decided");
            _check($"{Name} ({which})", record.Resource, record.Prepared.Values.Select(p => p.Work).ToList());
        }
    }

    public override void WriteKey(StateKey key, DateTimeOffset? inDoubtBy = null)
    {
        WriteRecord(key, _machine.Record, inDoubtBy);
        WriteRecord(key, _durable, inDoubtBy);
    }

    private void WriteRecord(StateKey key, ParticipantRecord<TResource, TWork> record, DateTimeOffset? inDoubtBy)
    {
        _resourceKey(key, record.Resource);
        key.Add(record.Prepared.Count);
        foreach (var (tx, p) in Sorted(record.Prepared))
        {
            // The work and the coordinator are the transaction's (see Prepare), so the id stands for them.
            key.Add(tx);
            if (inDoubtBy is { } now && now - p.PreparedAt >= Explorer.Options.InDoubtTimeout) key.Add(InDoubt);
            else key.Add(p.PreparedAt);
            key.Add(p.Deadline);
        }
        key.Add(record.Decided.Count);
        foreach (var (tx, d) in Sorted(record.Decided))
        {
            key.Add(tx);
            key.Add((int)d.Outcome);
            key.Add(d.Deadline);
            key.Add(d.KeepUntil);
        }
    }

    /// <summary>Stands for the start of a reservation in doubt: a tick count no time has.</summary>
    private const long InDoubt = long.MinValue + 1;

    /// <summary>Entries in key order; the common case of one entry allocates nothing.</summary>
    private static IEnumerable<KeyValuePair<string, T>> Sorted<T>(IReadOnlyDictionary<string, T> entries) =>
        entries.Count <= 1 ? entries : entries.OrderBy(e => e.Key, StringComparer.Ordinal);

    public override string Describe(DateTimeOffset epoch) =>
        $"{Name}: {_describe(_durable.Resource)}; durably prepared [{string.Join(",", _durable.Prepared.Keys)}]; durably decided [{string.Join(",", _durable.Decided.Select(d => $"{d.Key}={d.Value.Outcome}"))}]" +
        $"; live prepared [{string.Join(",", _machine.Record.Prepared.Keys)}]";
}

// ---------------------------------------------------------------- coordinators

/// <summary>The coordinator grain of one transaction: live machine, durable record, timers, the client, and the
/// explorer's record of what was said about the transaction.</summary>
internal sealed class ExCoordinator
{
    private static readonly Action<CoordinatorMachine, CoordinatorPhase> SetPhase = Setter<CoordinatorPhase>(nameof(CoordinatorMachine.Phase));
    private static readonly Action<CoordinatorMachine, CoordinatorRecord> SetRecord = Setter<CoordinatorRecord>(nameof(CoordinatorMachine.Record));

    private static Action<CoordinatorMachine, T> Setter<T>(string property) => typeof(CoordinatorMachine).GetProperty(property)!
        .GetSetMethod(nonPublic: true)!.CreateDelegate<Action<CoordinatorMachine, T>>();

    public required string Tx { get; init; }
    public required IReadOnlyList<ParticipantId> Participants { get; init; }
    /// <summary>The live machine, to be read; <see cref="Live"/> to be changed.</summary>
    public required CoordinatorMachine Machine
    {
        get => _machine;
        set { _machine = value; _machineShared = false; }
    }

    /// <summary>The live machine, to be changed: copied first while a clone shares it.</summary>
    public CoordinatorMachine Live
    {
        get
        {
            if (_machineShared) Machine = CloneMachine(_machine);
            return _machine;
        }
    }

    private CoordinatorMachine _machine = null!;
    private bool _machineShared; // a clone shares the machine until one of them changes it

    public CoordinatorRecord? Durable { get; set; } // never mutated: replaced by a copy on every write
    public CoordinatorRecord? WriteInFlight { get; set; }
    public bool WriteIsCompletion { get; set; }
    public bool PrepareTimer { get; set; }
    public SmallMap<string, int> Attempts { get; set; } = new(StringComparer.Ordinal);
    public bool Submitted { get; set; }

    public bool ClientWaiting { get; set; }
    public Decision ClientTold { get; set; }

    /// <summary>An abort was given to a participant's inquiry: no commit may follow.</summary>
    public bool AbortAnswered { get; set; }

    /// <summary>Every prepare deadline (attempt) issued so far, by any activation.</summary>
    public SmallSet<long> IssuedDeadlines { get; set; } = new(Comparer<long>.Default);

    public CoordinatorMachine? Duplicate { get; set; }
    public bool DuplicateTimer { get; set; }

    public ExCoordinator Clone()
    {
        _machineShared = true;
        return new ExCoordinator
        {
            Tx = Tx,
            Participants = Participants,
            Machine = _machine,
            _machineShared = true,
            Durable = Durable,
            WriteInFlight = WriteInFlight,
            WriteIsCompletion = WriteIsCompletion,
            PrepareTimer = PrepareTimer,
            Attempts = Attempts,
            Submitted = Submitted,
            ClientWaiting = ClientWaiting,
            ClientTold = ClientTold,
            AbortAnswered = AbortAnswered,
            IssuedDeadlines = IssuedDeadlines,
            Duplicate = Duplicate is null ? null : CloneMachine(Duplicate),
            DuplicateTimer = DuplicateTimer,
        };
    }

    /// <summary>
    /// The machine has no public way to take a volatile phase (Preparing, Deciding, InDoubt, Completing) from
    /// outside, and the explorer must copy machines in any phase, so the copy sets phase and record through
    /// their private setters. Everything else about the machine is its own code.
    /// </summary>
    private static CoordinatorMachine CloneMachine(CoordinatorMachine machine)
    {
        var copy = new CoordinatorMachine(machine.TransactionId, Explorer.Options, null);
        SetRecord(copy, CopyRecord(machine.Record));
        SetPhase(copy, machine.Phase);
        return copy;
    }

    public static CoordinatorRecord CopyRecord(CoordinatorRecord r) => new()
    {
        TransactionId = r.TransactionId,
        Fingerprint = r.Fingerprint,
        Decision = r.Decision,
        Order = r.Order,
        AbortReason = r.AbortReason,
        Participants = r.Participants.ConvertAll(p => new ParticipantEntry
        {
            Participant = p.Participant,
            Vote = p.Vote,
            Reason = p.Reason,
            Source = p.Source,
            Acknowledged = p.Acknowledged,
        }),
        StartedAt = r.StartedAt,
        PrepareDeadline = r.PrepareDeadline,
        DecidedAt = r.DecidedAt,
        CompletedAt = r.CompletedAt,
        PresumedAbort = r.PresumedAbort,
        Heuristic = r.Heuristic,
    };

    public static void WriteRecord(StateKey key, CoordinatorRecord? r, Swap? swap = null)
    {
        if (r is null) { key.Add(-1); return; }
        // Times and reasons that no rule reads (when it was decided or completed, why it aborted) are left
        // out: states that differ only in them behave alike from here on.
        key.Add((int)r.Decision);
        key.Add(r.StartedAt);
        key.Add(r.PrepareDeadline);
        key.Add(r.CompletedAt is null);
        key.Add(r.PresumedAbort);
        key.Add(r.Heuristic);
        key.Add(r.Participants.Count);
        // Entries keep the order of Begin's list, so the position names the participant (exchanged, with a swap).
        for (var i = 0; i < r.Participants.Count; i++)
        {
            var p = r.Participants[swap is null || r.Participants.Count <= swap.Last ? i : swap.Place(i)];
            key.Add(p.Vote is { } vote ? (int)vote : -1);
            key.Add(p.Reason == Refusals.UnknownResource);
            key.Add((int)p.Source);
            key.Add(p.Acknowledged);
        }
    }

    /// <param name="swap">When given, the form of this coordinator with the swap's two participants exchanged.</param>
    public void WriteKey(StateKey key, Swap? swap = null)
    {
        key.Add((int)Machine.Phase);
        WriteRecord(key, Machine.Record, swap);
        WriteRecord(key, Durable, swap);
        WriteRecord(key, WriteInFlight, swap);
        key.Add(WriteIsCompletion); key.Add(PrepareTimer); key.Add(Submitted); key.Add(ClientWaiting); key.Add((int)ClientTold); key.Add(AbortAnswered);
        key.Add(Attempts.Count);
        if (swap is null)
            foreach (var (p, a) in Attempts.Entries) { key.Add(p); key.Add(a); }
        else
            foreach (var (p, a) in swap.Renamed(Attempts.Entries)) { key.Add(p); key.Add(a); }
        key.Add(IssuedDeadlines.Count);
        foreach (var d in IssuedDeadlines.Items) key.Add(d);
        key.Add(Duplicate is not null);
        if (Duplicate is not null)
        {
            key.Add((int)Duplicate.Phase);
            key.Add(DuplicateTimer);
            WriteRecord(key, Duplicate.Record, swap);
        }
    }
}
