using System.Runtime.CompilerServices;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;

namespace OrleansTwoPC.Protocol.Tests.Exploration;

public enum WriteOutcome { Written, FailedNotWritten, FailedButWritten }

/// <summary>One step of the explored system. Faults draw on a budget; the others are what a fault-free run does.</summary>
public abstract record ExEvent
{
    public virtual bool IsFault => false;
}

public sealed record SubmitOrder(string Tx) : ExEvent;
public sealed record ResubmitOrder(string Tx) : ExEvent { public override bool IsFault => true; }
public sealed record DeliverMessage(ExMessage Message) : ExEvent;
public sealed record DeliverWithFailedWrite(ExMessage Message) : ExEvent { public override bool IsFault => true; }
public sealed record DropMessage(ExMessage Message) : ExEvent { public override bool IsFault => true; }
public sealed record DuplicateMessage(ExMessage Message) : ExEvent { public override bool IsFault => true; }
public sealed record FirePrepareTimer(string Tx, bool OfDuplicate) : ExEvent;
public sealed record FireRetryTimer(string Tx, string Participant) : ExEvent;
public sealed record FinishWrite(string Tx, WriteOutcome Outcome) : ExEvent { public override bool IsFault => Outcome != WriteOutcome.Written; }
public sealed record CrashCoordinator(string Tx, bool WriteLands) : ExEvent { public override bool IsFault => true; }
public sealed record ReloadCoordinator(string Tx) : ExEvent;
public sealed record RecoveryTick(string Tx) : ExEvent;
public sealed record CrashParticipant(string Participant) : ExEvent { public override bool IsFault => true; }
public sealed record FireInquiryTimer(string Participant, string Tx) : ExEvent;
public sealed record AdvanceClock : ExEvent;
public sealed record StartDuplicateActivation(string Tx) : ExEvent { public override bool IsFault => true; }

/// <summary>
/// One state of the explored system: every coordinator and participant (live machine, durable record),
/// the messages in flight as a multiset, pending timers, the simulated clock, what is left of the fault
/// budgets, and the history the properties need (outcomes that were ever durable, abort answers given).
/// The hosts mirror the simulation's (and the grains'): a participant writes before it answers; a
/// coordinator writes the decision before anybody hears it.
/// </summary>
internal sealed class World
{
    public required DateTimeOffset Now { get; set; }
    public required PlantedBug Bugs { get; init; }

    /// <summary>Whether the clock also visits the times at which tombstones expire.</summary>
    public required bool TombstoneTime { get; init; }
    public required int CoordinatorCrashes { get; set; }
    public required int ParticipantCrashes { get; set; }
    public required int Drops { get; set; }
    public required int Duplicates { get; set; }
    public required int WriteFailures { get; set; }
    public required int Resubmits { get; set; }
    public required int DuplicateActivations { get; set; }
    public required List<ExCoordinator> Coordinators { get; init; }
    public required List<ExParticipant> Participants { get; init; }

    /// <summary>In flight, kept sorted by key so that equal multisets serialize equally.</summary>
    public required List<ExMessage> Messages { get; init; }

    /// <summary>Every outcome that reached a participant's disk, by "participant|tx".</summary>
    public required SmallMap<string, Decision> DurableOutcomes { get; set; }

    /// <summary>"participant|tx|deadline" of every attempt a participant had rolled back when it rolled back.</summary>
    public required SmallSet<string> RolledBackAttempts { get; set; }

    /// <summary>When set, every step says in words what happened (used to print a trace).</summary>
    public List<string>? Notes { get; set; }

    public World Clone() => new()
    {
        Now = Now,
        Bugs = Bugs,
        LeavesOutDeadMessages = LeavesOutDeadMessages,
        TombstoneTime = TombstoneTime,
        Symmetry = Symmetry,
        CoordinatorCrashes = CoordinatorCrashes,
        ParticipantCrashes = ParticipantCrashes,
        Drops = Drops,
        Duplicates = Duplicates,
        WriteFailures = WriteFailures,
        Resubmits = Resubmits,
        DuplicateActivations = DuplicateActivations,
        Coordinators = Coordinators.ConvertAll(c => c.Clone()),
        Participants = Participants.ConvertAll(p => p.Clone()),
        Messages = new List<ExMessage>(Messages),
        DurableOutcomes = DurableOutcomes, // immutable: shared until written
        RolledBackAttempts = RolledBackAttempts,
    };

    /// <summary>Every budget, one byte each: <see cref="SpareFaults"/> and the duplicate activations left.</summary>
    public long Budgets => SpareFaults | Byte(DuplicateActivations) << 48;

    /// <summary>A world with this one's settings and the given parts (see <see cref="WorldQueue"/>).</summary>
    public World With(DateTimeOffset now, long budgets, List<ExCoordinator> coordinators, List<ExParticipant> participants,
        List<ExMessage> messages, SmallMap<string, Decision> outcomes, SmallSet<string> rolledBack) => new()
    {
        Now = now,
        Bugs = Bugs,
        LeavesOutDeadMessages = LeavesOutDeadMessages,
        TombstoneTime = TombstoneTime,
        Symmetry = Symmetry,
        CoordinatorCrashes = (int)(budgets & 0xff),
        ParticipantCrashes = (int)(budgets >> 8 & 0xff),
        Drops = (int)(budgets >> 16 & 0xff),
        Duplicates = (int)(budgets >> 24 & 0xff),
        WriteFailures = (int)(budgets >> 32 & 0xff),
        Resubmits = (int)(budgets >> 40 & 0xff),
        DuplicateActivations = (int)(budgets >> 48 & 0xff),
        Coordinators = coordinators,
        Participants = participants,
        Messages = messages,
        DurableOutcomes = outcomes,
        RolledBackAttempts = rolledBack,
    };

    private static DateTimeOffset Epoch => Explorer.Epoch;
    private string T => ExMessage.Ms(Now, Epoch);

    private ExCoordinator Coordinator(string tx)
    {
        foreach (var c in Coordinators)
            if (c.Tx == tx) return c;
        throw new KeyNotFoundException($"no coordinator of {tx}");
    }

    private ExParticipant Participant(string name)
    {
        foreach (var p in Participants)
            if (p.Name == name) return p;
        throw new KeyNotFoundException($"no participant {name}");
    }

    private void Note(string text) => Notes?.Add(text);

    /// <summary>Formats the text only when a trace is being printed: exploring, nothing is formatted.</summary>
    private void Note([InterpolatedStringHandlerArgument("")] ref NoteText text)
    {
        if (Notes is not null) Notes.Add(text.ToStringAndClear());
    }

    // ---------------------------------------------------------------- canonical form

    /// <summary>
    /// Writes the canonical form: everything that decides what happens next or what the checks read, except
    /// the fault budgets in <see cref="SpareFaults"/>, which the explorer compares by subsumption. The budget of
    /// duplicate activations stays in the key: the clock reads it (see <see cref="NextLandmark"/>).
    /// </summary>
    /// <param name="reductions">The reductions that merge forms: with <see cref="Reductions.DeadMessages"/> dead messages
    /// are left out (to compare a search that keeps them in flight with one that does not), with
    /// <see cref="Reductions.PastInDoubtTimes"/> the starts of reservations already in doubt.</param>
    /// <param name="swap">When given, the form of this state with the swap's two participants exchanged.</param>
    public void WriteKey(StateKey key, Reductions reductions, Swap? swap = null)
    {
        var withoutDead = reductions.HasFlag(Reductions.DeadMessages);
        DateTimeOffset? inDoubtBy = reductions.HasFlag(Reductions.PastInDoubtTimes) ? Now : null;
        key.Clear();
        key.Add(Now);
        key.Add(DuplicateActivations);
        foreach (var c in Coordinators) c.WriteKey(key, swap);
        for (var i = 0; i < Participants.Count; i++) Participants[swap?.Place(i) ?? i].WriteKey(key, inDoubtBy);
        // Messages as a sorted multiset of their ids: the order does not depend on the names a swap exchanges.
        Span<UInt128> ids = stackalloc UInt128[Messages.Count];
        var count = 0;
        foreach (var m in Messages)
            if (!withoutDead || !IsDead(m)) ids[count++] = swap is null ? m.Id : m.IdUnder(swap);
        ids = ids[..count];
        ids.Sort();
        key.Add(count);
        foreach (var id in ids) key.Add(id);
        var outcomes = swap is null ? DurableOutcomes.Entries : swap.Renamed(DurableOutcomes.Entries);
        key.Add(outcomes.Length);
        foreach (var (k, v) in outcomes) { key.Add(k); key.Add((int)v); }
        var rolledBack = swap is null ? RolledBackAttempts.Items : swap.Renamed(RolledBackAttempts.Items);
        key.Add(rolledBack.Length);
        foreach (var k in rolledBack) key.Add(k);
    }

    /// <summary>Two participants that behave alike in this scope, or null (see <see cref="Reductions.Symmetry"/>).</summary>
    public Swap? Symmetry { get; init; }

    /// <summary>
    /// What is left of the budgets that only faults read, one byte each. A state with at least as much of each
    /// left can do everything this one can: the same events are enabled but for faults, and each leads to the
    /// same state with budgets no smaller.
    /// </summary>
    public long SpareFaults =>
        Byte(CoordinatorCrashes) | Byte(ParticipantCrashes) << 8 | Byte(Drops) << 16 | Byte(Duplicates) << 24
        | Byte(WriteFailures) << 32 | Byte(Resubmits) << 40;

    private static long Byte(int budget) => budget is >= 0 and <= 255 ? budget : throw new ArgumentOutOfRangeException(nameof(budget), budget, "a budget is 0 to 255");

    /// <summary>Whether budgets <paramref name="more"/> are at least <paramref name="less"/> in every kind.</summary>
    public static bool Covers(long more, long less)
    {
        for (var shift = 0; shift < 48; shift += 8)
            if ((more >> shift & 0xff) < (less >> shift & 0xff)) return false;
        return true;
    }

    // ---------------------------------------------------------------- enabled events

    public IEnumerable<ExEvent> Enabled()
    {
        foreach (var c in Coordinators)
        {
            if (!c.Submitted) yield return new SubmitOrder(c.Tx);
            else if (Resubmits > 0 && c.Machine.Phase == CoordinatorPhase.Idle && !c.ClientWaiting) yield return new ResubmitOrder(c.Tx);
            if (c.PrepareTimer && Now >= c.Machine.Record.PrepareDeadline) yield return new FirePrepareTimer(c.Tx, OfDuplicate: false);
            if (c.Duplicate is not null && c.DuplicateTimer && Now >= c.Duplicate.Record.PrepareDeadline) yield return new FirePrepareTimer(c.Tx, OfDuplicate: true);
            if (c.Machine.Phase == CoordinatorPhase.Decided)
            {
                foreach (var entry in c.Machine.Record.Participants.Where(e => !e.Acknowledged))
                    if (!Messages.Any(m => m.Tx == c.Tx && m.Participant == entry.Participant && (m.Kind == MessageKind.Ack || m.Kind == MessageKind.Decision && m.Attempt > 0)))
                        yield return new FireRetryTimer(c.Tx, entry.Participant); // the ack timeout fires only once the send or its ack is lost
                if (c.Machine.Record.Participants.All(e => e.Acknowledged)) yield return new RecoveryTick(c.Tx);
            }
            if (c.WriteInFlight is not null)
            {
                yield return new FinishWrite(c.Tx, WriteOutcome.Written);
                if (WriteFailures > 0)
                {
                    yield return new FinishWrite(c.Tx, WriteOutcome.FailedNotWritten);
                    yield return new FinishWrite(c.Tx, WriteOutcome.FailedButWritten);
                }
            }
            if (c.Machine.Phase == CoordinatorPhase.InDoubt) yield return new ReloadCoordinator(c.Tx);
            if (CoordinatorCrashes > 0 && c.Submitted)
            {
                yield return new CrashCoordinator(c.Tx, WriteLands: false);
                if (c.WriteInFlight is not null) yield return new CrashCoordinator(c.Tx, WriteLands: true);
            }
            if (DuplicateActivations > 0 && c.Duplicate is null && c.Durable is { } durable && Now > durable.StartedAt)
                yield return new StartDuplicateActivation(c.Tx);
        }
        foreach (var p in Participants)
        {
            if (ParticipantCrashes > 0) yield return new CrashParticipant(p.Name);
            foreach (var (tx, preparedAt, _) in p.LivePrepared)
                if (Now - preparedAt >= Explorer.Options.InDoubtTimeout
                    && !Messages.Any(m => m.Tx == tx && m.Participant == p.Name && (m.Kind == MessageKind.Inquiry || m.Kind == MessageKind.Decision && m.Attempt == 0)))
                    yield return new FireInquiryTimer(p.Name, tx);
        }
        ExMessage? previous = null;
        foreach (var m in Messages)
        {
            if (previous is not null && previous.Key == m.Key) continue;
            previous = m;
            yield return new DeliverMessage(m);
            if (WriteFailures > 0 && m.Kind is MessageKind.Prepare or MessageKind.Decision) yield return new DeliverWithFailedWrite(m);
            if (Drops > 0) yield return new DropMessage(m);
            if (Duplicates > 0) yield return new DuplicateMessage(m);
        }
        if (NextLandmark() is not null) yield return new AdvanceClock();
    }

    /// <summary>
    /// The clock moves only to the next time at which something can change: a prepare deadline, the moment
    /// a reservation counts as in doubt, just past a tombstone's keep-until time. So time is discrete and finite.
    /// </summary>
    private DateTimeOffset? NextLandmark()
    {
        var landmarks = new List<DateTimeOffset>();
        foreach (var c in Coordinators)
        {
            // Just past the deadline: the timer is due and every prepare arriving now is late.
            if (c.PrepareTimer && c.Machine.Record.PrepareDeadline is { } d) landmarks.Add(d + Explorer.Step);
            if (c.Duplicate is not null && c.DuplicateTimer && c.Duplicate.Record.PrepareDeadline is { } dd) landmarks.Add(dd + Explorer.Step);
            if (DuplicateActivations > 0 && c.Duplicate is null && c.Durable is { } durable) landmarks.Add(durable.StartedAt + Explorer.Step);
        }
        foreach (var p in Participants)
        {
            landmarks.AddRange(p.LivePrepared.Select(x => x.PreparedAt + Explorer.Options.InDoubtTimeout));
            // Tombstone expiry matters only to a prepare of a later attempt, i.e. a duplicate activation.
            if (TombstoneTime) landmarks.AddRange(p.DurableDecided.Select(x => x.KeepUntil + Explorer.Step));
        }
        var future = landmarks.Where(l => l > Now).ToList();
        return future.Count == 0 ? null : future.Min();
    }

    // ---------------------------------------------------------------- applying an event

    public void Apply(ExEvent ev)
    {
        switch (ev)
        {
            case SubmitOrder s:
                Note($"t={T}: the client places the order of {s.Tx}");
                Submit(Coordinator(s.Tx));
                break;
            case ResubmitOrder s:
                Resubmits--;
                Note($"t={T}: the client places the order of {s.Tx} again");
                Submit(Coordinator(s.Tx));
                break;
            case DeliverMessage d:
                Take(d.Message);
                Note($"t={T}: deliver {d.Message.Describe(Epoch)}");
                Deliver(d.Message, failWrite: false);
                break;
            case DeliverWithFailedWrite d:
                WriteFailures--;
                Take(d.Message);
                Note($"t={T}: deliver {d.Message.Describe(Epoch)}, but the participant's write fails");
                Deliver(d.Message, failWrite: true);
                break;
            case DropMessage d:
                Drops--;
                Take(d.Message);
                Note($"t={T}: LOST {d.Message.Describe(Epoch)}");
                break;
            case DuplicateMessage d:
                Duplicates--;
                Note($"t={T}: DUPLICATED {d.Message.Describe(Epoch)}");
                Send(d.Message);
                break;
            case FirePrepareTimer { OfDuplicate: false } f:
            {
                var c = Coordinator(f.Tx);
                c.PrepareTimer = false;
                Note($"t={T}: prepare deadline of {f.Tx} passes");
                Execute(c, c.Live.OnPrepareDeadline(Now));
                break;
            }
            case FirePrepareTimer f:
            {
                var c = Coordinator(f.Tx);
                c.DuplicateTimer = false;
                Note($"t={T}: prepare deadline of the duplicate activation of {f.Tx} passes");
                ExecuteDuplicate(c, c.Duplicate!.OnPrepareDeadline(Now));
                break;
            }
            case FireRetryTimer r:
            {
                var c = Coordinator(r.Tx);
                Note($"t={T}: no acknowledgement from {r.Participant} for {r.Tx}: phase-two retry");
                Execute(c, c.Live.OnDecisionDeliveryFailed(ParticipantId.Parse(r.Participant), c.Attempts.GetValueOrDefault(r.Participant, 1)));
                break;
            }
            case FinishWrite w:
                FinishWriteOf(Coordinator(w.Tx), w.Outcome);
                break;
            case CrashCoordinator crash:
            {
                CoordinatorCrashes--;
                var c = Coordinator(crash.Tx);
                Note($"t={T}: CRASH of the coordinator of {crash.Tx} in {c.Machine.Phase}{(c.WriteInFlight is null ? "" : crash.WriteLands ? ", its write lands" : ", its write is lost")}");
                if (crash.WriteLands) PersistCoordinator(c, c.WriteInFlight!);
                c.ClientWaiting = false; // the client hears an error and may place the order again
                Restart(c);
                break;
            }
            case ReloadCoordinator r:
                Note($"t={T}: the coordinator of {r.Tx} reloads its record after the failed decision write");
                Restart(Coordinator(r.Tx));
                break;
            case RecoveryTick r:
            {
                var c = Coordinator(r.Tx);
                Note($"t={T}: recovery tick of {r.Tx}");
                Execute(c, c.Live.Resume(Now));
                break;
            }
            case CrashParticipant crash:
                ParticipantCrashes--;
                Note($"t={T}: CRASH of {crash.Participant} (volatile state lost, durable record kept)");
                Participant(crash.Participant).Restart(Bugs);
                break;
            case FireInquiryTimer i:
                Note($"t={T}: {i.Participant} is in doubt about {i.Tx}");
                Send(new ExMessage(MessageKind.Inquiry, i.Tx, i.Participant));
                break;
            case AdvanceClock:
                Now = NextLandmark()!.Value;
                Note($"t={T}: the clock advances");
                break;
            case StartDuplicateActivation s:
            {
                DuplicateActivations--;
                var c = Coordinator(s.Tx);
                Note($"t={T}: DUPLICATE activation of the coordinator of {s.Tx} begins (it loaded no record)");
                c.Duplicate = new CoordinatorMachine(c.Tx, Explorer.Options, null);
                var actions = c.Duplicate.Begin($"fp-{c.Tx}", c.Participants, Now);
                c.IssuedDeadlines = c.IssuedDeadlines.Add(c.Duplicate.Record.PrepareDeadline!.Value.UtcTicks);
                ExecuteDuplicate(c, actions);
                break;
            }
            default:
                throw new InvalidOperationException($"unknown event {ev}");
        }
        if (LeavesOutDeadMessages) LeaveOutDeadMessages();
    }

    /// <summary>Whether messages that can change nothing any more are taken out of flight (see below).</summary>
    public required bool LeavesOutDeadMessages { get; init; }

    /// <summary>
    /// A vote to a coordinator with a durable record, and an acknowledgement to one whose durable record is
    /// complete, can change nothing any more: a vote counts only while its coordinator prepares, which it never
    /// does again once a decision is durable (a restart loads that decision); an acknowledgement counts only for
    /// an entry not yet acknowledged, and a completed record has them all. No timer waits on either kind, and
    /// the checks read no message. So a state with such a message in flight behaves as the state without it,
    /// but for deliveries that change nothing and faults that only spend a budget: it is left out.
    /// Votes of a duplicate activation go to that activation and stay.
    /// </summary>
    private void LeaveOutDeadMessages()
    {
        for (var i = Messages.Count - 1; i >= 0; i--)
        {
            if (!IsDead(Messages[i])) continue;
            Note($"    ({Messages[i].Describe(Epoch)} can change nothing any more: left out)");
            Messages.RemoveAt(i);
        }
    }

    private bool IsDead(ExMessage m)
    {
        var durable = Coordinator(m.Tx).Durable;
        return m.Kind switch
        {
            MessageKind.Vote => !m.Duplicate && durable is not null,
            MessageKind.Ack => durable is { IsCompleted: true },
            _ => false,
        };
    }

    private void Take(ExMessage message)
    {
        var i = 0;
        while (i < Messages.Count && Messages[i].Key != message.Key) i++;
        if (i == Messages.Count) throw new InvalidOperationException($"{message.Key} is not in flight");
        Messages.RemoveAt(i);
    }

    private void Send(ExMessage message)
    {
        var i = 0;
        while (i < Messages.Count && string.CompareOrdinal(Messages[i].Key, message.Key) <= 0) i++;
        Messages.Insert(i, message);
    }

    // ---------------------------------------------------------------- coordinator host

    private void Submit(ExCoordinator c)
    {
        c.Submitted = true;
        // Like the grain: only an idle coordinator begins; otherwise the recorded outcome is returned.
        if (c.Machine.Phase != CoordinatorPhase.Idle) return;
        c.ClientWaiting = true;
        var actions = c.Live.Begin($"fp-{c.Tx}", c.Participants, Now);
        c.IssuedDeadlines = c.IssuedDeadlines.Add(c.Machine.Record.PrepareDeadline!.Value.UtcTicks);
        Execute(c, actions);
    }

    private void Restart(ExCoordinator c)
    {
        c.WriteInFlight = null;
        c.PrepareTimer = false;
        c.Attempts = c.Attempts.Clear();
        c.Machine = new CoordinatorMachine(c.Tx, Explorer.Options, c.Durable is null ? null : ExCoordinator.CopyRecord(c.Durable));
        Note($"    the coordinator of {c.Tx} restarts in {c.Machine.Phase}");
        if (c.Machine.Phase == CoordinatorPhase.Decided) Execute(c, c.Live.Resume(Now));
    }

    private void FinishWriteOf(ExCoordinator c, WriteOutcome outcome)
    {
        var snapshot = c.WriteInFlight!;
        var completion = c.WriteIsCompletion;
        c.WriteInFlight = null;
        if (outcome != WriteOutcome.Written) WriteFailures--;
        Note($"t={T}: the coordinator's {(completion ? "completion" : $"decision ({snapshot.Decision})")} write of {c.Tx} " +
             (outcome switch { WriteOutcome.Written => "succeeds", WriteOutcome.FailedNotWritten => "FAILS", _ => "FAILS, yet reached the disk" }));
        if (outcome != WriteOutcome.FailedNotWritten) PersistCoordinator(c, snapshot);
        if (Bugs.HasFlag(PlantedBug.DecisionNotForcedBeforePhaseTwo) && !completion) return; // the machine was told long ago
        if (outcome == WriteOutcome.Written)
        {
            if (completion) c.Live.OnCompletionPersisted();
            else Execute(c, c.Live.OnDecisionPersisted());
        }
        else if (completion) c.Live.OnCompletionPersistFailed();
        else
        {
            c.Live.OnDecisionPersistFailed();
            c.ClientWaiting = false; // the client hears "in doubt"
        }
    }

    private void PersistCoordinator(ExCoordinator c, CoordinatorRecord snapshot)
    {
        if (snapshot.Decision == Decision.None) throw new ExplorationViolation($"{c.Tx}: a record without a decision was written");
        if (c.Durable is { } before && before.Decision != snapshot.Decision)
            throw new ExplorationViolation($"stability: the durable decision of {c.Tx} changed from {before.Decision} to {snapshot.Decision}");
        if (c.AbortAnswered && snapshot.Decision == Decision.Commit)
            throw new ExplorationViolation($"stability: {c.Tx} was answered abort to an inquiry, then commit was written");
        c.Durable = snapshot;
    }

    private void Execute(ExCoordinator c, IReadOnlyList<CoordinatorAction> actions)
    {
        foreach (var action in actions)
        {
            switch (action)
            {
                case SendPrepare prepare:
                    Send(new ExMessage(MessageKind.Prepare, c.Tx, prepare.Participant.ToString(), prepare.Deadline));
                    break;
                case StartPrepareTimer:
                    c.PrepareTimer = true;
                    break;
                case PersistDecision persist:
                    Note($"    {c.Tx} decides {persist.Decision}{(c.Machine.Record.AbortReason is { } why ? $" ({why})" : "")}; the decision write starts");
                    if (persist.Decision == Decision.Commit)
                        foreach (var p in c.Participants)
                        {
                            var status = Participant(p.ToString()).DurableStatus(c.Tx);
                            if (status != ParticipantTransactionStatus.Prepared)
                                throw new ExplorationViolation($"validity: {c.Tx} decided commit while {p} is durably {status}, not prepared");
                        }
                    if (c.WriteInFlight is not null) throw new ExplorationViolation($"{c.Tx}: a second write started while one is in flight");
                    c.WriteInFlight = ExCoordinator.CopyRecord(c.Machine.Record);
                    c.WriteIsCompletion = false;
                    if (Bugs.HasFlag(PlantedBug.SendDecisionBeforeItIsDurable))
                        foreach (var p in c.Machine.Record.Participants)
                            Send(new ExMessage(MessageKind.Decision, c.Tx, p.Participant, c.Machine.Record.PrepareDeadline, Decision: persist.Decision, Attempt: 1));
                    if (Bugs.HasFlag(PlantedBug.DecisionNotForcedBeforePhaseTwo)) Execute(c, c.Live.OnDecisionPersisted());
                    break;
                case ReplyToClient reply:
                    Note($"    the client is told {reply.Outcome.Decision}");
                    if (c.Durable?.Decision != reply.Outcome.Decision)
                        throw new ExplorationViolation($"validity: the client was told {reply.Outcome.Decision} for {c.Tx} while the durable decision is {c.Durable?.Decision.ToString() ?? "none"}");
                    c.ClientTold = reply.Outcome.Decision;
                    c.ClientWaiting = false;
                    break;
                case SendDecision send:
                    if (send.Decision != c.Durable?.Decision)
                        throw new ExplorationViolation($"validity: {send.Decision} of {c.Tx} sent to {send.Participant} before it was durable (durable: {c.Durable?.Decision.ToString() ?? "none"})");
                    c.Attempts = c.Attempts.SetItem(send.Participant.ToString(), send.Attempt);
                    Send(new ExMessage(MessageKind.Decision, c.Tx, send.Participant.ToString(), c.Machine.Record.PrepareDeadline, Decision: send.Decision, Attempt: send.Attempt));
                    break;
                case PersistCompletion:
                    Note($"    every participant acknowledged {c.Tx}; the completion write starts");
                    if (c.WriteInFlight is not null) throw new ExplorationViolation($"{c.Tx}: a second write started while one is in flight");
                    c.WriteInFlight = ExCoordinator.CopyRecord(c.Machine.Record);
                    c.WriteIsCompletion = true;
                    break;
                default:
                    throw new InvalidOperationException($"unexpected action {action}");
            }
        }
    }

    private void ExecuteDuplicate(ExCoordinator c, IReadOnlyList<CoordinatorAction> actions)
    {
        foreach (var action in actions)
        {
            switch (action)
            {
                case SendPrepare prepare:
                    Send(new ExMessage(MessageKind.Prepare, c.Tx, prepare.Participant.ToString(), prepare.Deadline, Duplicate: true));
                    break;
                case StartPrepareTimer:
                    c.DuplicateTimer = true;
                    break;
                case PersistDecision persist:
                    // A versioned insert: refused because the primary's record exists. Nothing is sent; the
                    // activation deactivates and later calls reach the primary.
                    if (c.Durable is null) throw new ExplorationViolation($"{c.Tx}: the duplicate activation's insert would have succeeded");
                    Note($"    the duplicate activation decides {persist.Decision}; its insert is refused (the record says {c.Durable.Decision}) and it deactivates");
                    c.Duplicate = null;
                    c.DuplicateTimer = false;
                    return;
                default:
                    throw new ExplorationViolation($"{c.Tx}: the duplicate activation asked for {action} without a durable decision of its own");
            }
        }
    }

    // ---------------------------------------------------------------- participant host

    private void Deliver(ExMessage m, bool failWrite)
    {
        switch (m.Kind)
        {
            case MessageKind.Prepare: OnPrepare(m, failWrite); break;
            case MessageKind.Decision: OnDecision(m, failWrite); break;
            case MessageKind.Vote: OnVote(m); break;
            case MessageKind.Ack:
            {
                var c = Coordinator(m.Tx);
                Execute(c, c.Live.OnDecisionAcknowledged(ParticipantId.Parse(m.Participant), Now));
                break;
            }
            case MessageKind.Inquiry: OnInquiry(m); break;
        }
    }

    private void OnVote(ExMessage m)
    {
        var c = Coordinator(m.Tx);
        if (m.Duplicate)
        {
            if (c.Duplicate is null) { Note("    nobody awaits it: the duplicate activation is gone"); return; }
            ExecuteDuplicate(c, c.Duplicate.OnVote(ParticipantId.Parse(m.Participant), m.Vote, m.Reason, Now, m.Deadline));
            return;
        }
        // Weaker than the grain, which takes a vote only as the reply of its own activation's call: here a vote
        // reaches whichever activation is current, and the deadline it names is all that binds it to its attempt.
        var attempt = Bugs.HasFlag(PlantedBug.VoteNotBoundToItsAttempt) ? null : m.Deadline;
        Execute(c, c.Live.OnVote(ParticipantId.Parse(m.Participant), m.Vote, m.Reason, Now, attempt));
    }

    private void OnInquiry(ExMessage m)
    {
        var c = Coordinator(m.Tx);
        Decision answer;
        var deadline = c.Machine.Record.PrepareDeadline;
        if (Bugs.HasFlag(PlantedBug.PresumedCommit) && c.Machine.Phase == CoordinatorPhase.Idle)
        {
            answer = Decision.Commit; // presumed commit: no record is read as "the latest attempt committed"
            deadline = new DateTimeOffset(c.IssuedDeadlines.Max, TimeSpan.Zero);
        }
        else
        {
            var result = c.Live.OnInquiry(Now);
            Execute(c, result.Actions);
            if (result.Pending) { Note("    the coordinator cannot answer yet"); return; }
            answer = result.Decision;
            if (answer != c.Durable?.Decision)
                throw new ExplorationViolation($"validity: {c.Tx} answered {answer} to an inquiry while the durable decision is {c.Durable?.Decision.ToString() ?? "none"}");
        }
        if (answer == Decision.Abort) c.AbortAnswered = true;
        Send(new ExMessage(MessageKind.Decision, m.Tx, m.Participant, deadline, Decision: answer, Attempt: 0));
    }

    private void OnPrepare(ExMessage m, bool failWrite)
    {
        var p = Participant(m.Participant);
        var result = p.Prepare(m.Tx, m.Deadline!.Value, Now, Bugs);
        Note($"    {p.Name}: prepare {result.Case}");
        if (result.MustPersist && !Bugs.HasFlag(PlantedBug.VoteYesBeforePrepareIsDurable))
        {
            if (failWrite) { p.Restart(Bugs); return; } // the write threw: nothing answered, the record is reloaded
            p.Persist();
            Recorded(p);
        }
        Send(new ExMessage(MessageKind.Vote, m.Tx, m.Participant, m.Deadline, result.Vote, result.Reason, Duplicate: m.Duplicate));
    }

    private void OnDecision(ExMessage m, bool failWrite)
    {
        var p = Participant(m.Participant);
        var inquiryAnswer = m.Attempt == 0;
        var result = p.Apply(m.Tx, m.Decision, m.Deadline, inquiryAnswer, Bugs, Now);
        Note($"    {p.Name}: {m.Decision} {result.Case}");
        if (result.Case == DecisionCase.Conflict)
            throw new ExplorationViolation($"atomicity: {p.Name} told {m.Decision} for {m.Tx} after applying the opposite");
        if (result.MustPersist && !(Bugs.HasFlag(PlantedBug.AcknowledgeBeforeOutcomeIsDurable) && !inquiryAnswer))
        {
            if (failWrite) { p.Restart(Bugs); return; }
            p.Persist();
            Recorded(p);
        }
        if (!inquiryAnswer && result.Acknowledge) Send(new ExMessage(MessageKind.Ack, m.Tx, m.Participant));
    }

    /// <summary>After a participant's write: remember what became durable there (the properties' history).</summary>
    private void Recorded(ExParticipant p)
    {
        foreach (var (tx, outcome, _) in p.DurableDecided)
        {
            var key = $"{p.Name}|{tx}";
            if (DurableOutcomes.TryGetValue(key, out var before) && before != outcome)
                throw new ExplorationViolation($"atomicity: the durable outcome of {tx} at {p.Name} changed from {before} to {outcome}");
            if (outcome == Decision.Abort && !DurableOutcomes.ContainsKey(key))
                foreach (var d in Coordinator(tx).IssuedDeadlines.Items) RolledBackAttempts = RolledBackAttempts.Add($"{p.Name}|{tx}|{d}");
            DurableOutcomes = DurableOutcomes.SetItem(key, outcome);
        }
    }

    // ---------------------------------------------------------------- properties

    /// <summary>The safety properties, checked in every state.</summary>
    public void Check()
    {
        foreach (var p in Participants) p.Check();
        foreach (var c in Coordinators)
        {
            var durable = c.Durable?.Decision ?? Decision.None;
            var outcomes = c.Participants.Select(p => DurableOutcomes.GetValueOrDefault($"{p}|{c.Tx}", Decision.None)).ToList();
            if (outcomes.Contains(Decision.Commit) && outcomes.Contains(Decision.Abort))
                throw new ExplorationViolation($"atomicity: {c.Tx} is committed at one participant and aborted at another");
            foreach (var (p, outcome) in c.Participants.Zip(outcomes))
                if (outcome != Decision.None && outcome != durable)
                    throw new ExplorationViolation($"validity: {p} holds {c.Tx} as {outcome} durably, but the coordinator's durable decision is {(durable == Decision.None ? "none" : durable)}");
            if (c.AbortAnswered && (durable == Decision.Commit || outcomes.Contains(Decision.Commit)))
                throw new ExplorationViolation($"stability: {c.Tx} was answered abort to an inquiry and then committed");
            if (c.ClientTold != Decision.None && c.ClientTold != durable)
                throw new ExplorationViolation($"validity: the client was told {c.ClientTold} for {c.Tx}, the durable decision is {durable}");
            if (c.Machine.Phase is CoordinatorPhase.Decided or CoordinatorPhase.Completing or CoordinatorPhase.Completed && c.Machine.Record.Decision != durable)
                throw new ExplorationViolation($"validity: the coordinator of {c.Tx} acts on {c.Machine.Record.Decision} while the durable decision is {durable}");
            // An acknowledgement promises the participant's outcome is durable: a completed record lets the coordinator forget.
            if (c.Durable is { IsCompleted: true, PresumedAbort: false })
                foreach (var (p, outcome) in c.Participants.Zip(outcomes))
                    if (outcome != durable)
                        throw new ExplorationViolation($"atomicity: {c.Tx} is durably completed as {durable}, but {p} never made that outcome durable");
        }
        foreach (var p in Participants)
            foreach (var (tx, _, deadline) in p.LivePrepared)
                if (RolledBackAttempts.Contains($"{p.Name}|{tx}|{deadline.UtcTicks}"))
                    throw new ExplorationViolation($"stability: {p.Name} reserved {tx} (deadline t={ExMessage.Ms(deadline, Epoch)}) again after rolling that attempt back");
    }

    /// <summary>Terminal and good: every participant resolved with nothing reserved, nothing in flight, every coordinator at rest.</summary>
    public bool Settled() =>
        Messages.Count == 0
        && Participants.All(p => !p.LivePrepared.Any() && !p.DurablePrepared.Any())
        && Coordinators.All(c => c.WriteInFlight is null && c.Duplicate is null && !c.PrepareTimer
            && (c.Machine.Phase == CoordinatorPhase.Completed || c.Machine.Phase == CoordinatorPhase.Idle && c.Durable is null));

    public IEnumerable<string> Describe() =>
        Coordinators.Select(c => $"{c.Tx}: phase {c.Machine.Phase}, durable {c.Durable?.Decision.ToString() ?? "none"}{(c.Durable?.PresumedAbort == true ? " (presumed)" : "")}, completed {c.Durable?.IsCompleted == true}")
            .Concat(Participants.Select(p => p.Describe(Epoch)))
            .Append($"in flight: {(Messages.Count == 0 ? "nothing" : string.Join("; ", Messages.Select(m => m.Describe(Epoch))))}");
}

/// <summary>The text of a note, built only when the world keeps notes.</summary>
[InterpolatedStringHandler]
internal ref struct NoteText
{
    private DefaultInterpolatedStringHandler _text;

    public NoteText(int literalLength, int formattedCount, World world, out bool keep)
    {
        keep = world.Notes is not null;
        _text = keep ? new DefaultInterpolatedStringHandler(literalLength, formattedCount) : default;
    }

    public void AppendLiteral(string value) => _text.AppendLiteral(value);

    public void AppendFormatted<T>(T value) => _text.AppendFormatted(value);

    public void AppendFormatted<T>(T value, string? format) => _text.AppendFormatted(value, format);

    public string ToStringAndClear() => _text.ToStringAndClear();
}
