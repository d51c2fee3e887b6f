using System.Security.Cryptography;
using System.Text;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;

namespace OrleansTwoPC.Protocol.Tests.Simulation;

/// <summary>
/// A light, FoundationDB-style simulation of the protocol core. One thread, one <see cref="Random"/> seeded
/// from the seed, one simulated clock and one event queue: every message, timer and storage write is an
/// event. While faults are on, messages are dropped, duplicated and delayed (hence reordered), the prepare
/// timer fires early or late, storage writes fail (with or without reaching the disk), and coordinators and
/// participants crash, losing everything not written. Once a decision is durable, a duplicate coordinator
/// activation may begin the transaction again with a later deadline (its versioned insert is refused, its
/// prepares still land; late orders in the quiet phase prune tombstones so that they can reserve again).
/// Invariants are checked after every step; then a
/// quiet phase (no faults) must bring every transaction to one outcome everywhere.
/// The hosts here mirror the grains: a participant writes its record before it answers; a coordinator
/// writes the decision before anybody hears it and retries phase two with the core's backoff.
/// </summary>
public sealed class SimulationDriver
{
    private static readonly DateTimeOffset Epoch = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan AckTimeout = TimeSpan.FromMilliseconds(150);
    private static readonly TimeSpan SweepInterval = TimeSpan.FromMilliseconds(250);
    private const int TraceLength = 40;

    private readonly int _seed;
    private readonly SimulationSettings _settings;
    private readonly ProtocolOptions _options = SimulationSettings.Protocol();
    private readonly Random _random;
    private readonly PriorityQueue<SimEvent, (DateTimeOffset At, long Seq)> _queue = new();
    private readonly List<SimParticipant> _participants = new();
    private readonly Dictionary<string, SimParticipant> _participantsByName = new();
    private readonly List<SimCoordinator> _coordinators = new();
    private readonly Dictionary<string, SimCoordinator> _coordinatorsByTx = new();
    private readonly Dictionary<string, SimDuplicate> _duplicates = new();
    private readonly Dictionary<string, long> _initial = new();

    /// <summary>Every (participant, transaction) outcome that ever reached a participant's disk.</summary>
    private readonly Dictionary<(string Participant, string Tx), Decision> _durableOutcomes = new();

    private readonly Dictionary<string, int> _stats = new();
    private readonly Queue<string> _trace = new();
    private DateTimeOffset _now = Epoch;
    private long _seq;
    private int _step;
    private int _pendingNonSweep;
    private bool _faults = true;

    private SimulationDriver(int seed, SimulationSettings settings)
    {
        _seed = seed;
        _settings = settings;
        _random = new Random(seed);
    }

    /// <summary>Runs one seed; throws <see cref="SimulationFailure"/> naming the seed and step on any violation.</summary>
    public static SimulationReport Run(int seed, SimulationSettings? settings = null) => new SimulationDriver(seed, settings ?? SimulationSettings.Default).Run();

    private SimulationReport Run()
    {
        try
        {
            Setup();
            Loop();
            CheckFinal();
        }
        catch (Exception ex) when (ex is SimulationViolation or InvalidOperationException or ArgumentException or KeyNotFoundException or NullReferenceException)
        {
            throw new SimulationFailure(
                $"simulation seed {_seed} failed at step {_step}, t={(_now - Epoch).TotalMilliseconds:0} ms ({(_faults ? "fault" : "quiet")} phase): {ex.Message}\n" +
                $"replay: SimulationTests.OneSeed with [InlineData({_seed})]\n" +
                $"last events (oldest first):\n  {string.Join("\n  ", _trace)}\n" +
                $"state:\n  {string.Join("\n  ", Describe())}",
                ex);
        }
        return new SimulationReport(_seed, _step, _now - Epoch, new Dictionary<string, int>(_stats), Digest());
    }

    // ---------------------------------------------------------------- world

    private void Setup()
    {
        for (var i = 0; i < _settings.Skus; i++)
        {
            var stock = _random.Next(6, 21);
            AddCounter(new ParticipantId(ParticipantKind.Inventory, $"SKU-{i}"), stock, "insufficient stock");
        }
        for (var i = 0; i < _settings.Accounts; i++)
        {
            var balance = _random.Next(3_000, 8_000);
            AddCounter(new ParticipantId(ParticipantKind.Payment, $"ACC-{i}"), balance, "insufficient funds");
        }
        var prices = Enumerable.Range(0, _settings.Skus).Select(_ => (long)_random.Next(50, 400)).ToArray();

        for (var t = 0; t < _settings.Transactions + _settings.LateTransactions; t++)
        {
            var tx = $"tx-O{t}";
            var skuCount = _random.Next(1, 4); // 1..3 SKUs + account + shipment = 3..5 participants
            var skus = Enumerable.Range(0, _settings.Skus).OrderBy(_ => _random.Next()).Take(skuCount).OrderBy(i => i).ToList();
            var amounts = new Dictionary<string, long>();
            var participants = new List<ParticipantId>();
            long total = 0;
            var items = new List<ShipmentItem>();
            foreach (var s in skus)
            {
                var quantity = _random.Next(1, 4);
                var id = new ParticipantId(ParticipantKind.Inventory, $"SKU-{s}");
                participants.Add(id);
                amounts[id.ToString()] = quantity;
                total += quantity * prices[s];
                items.Add(new ShipmentItem { Sku = id.Key, Quantity = quantity });
            }
            var account = new ParticipantId(ParticipantKind.Payment, $"ACC-{_random.Next(_settings.Accounts)}");
            participants.Add(account);
            amounts[account.ToString()] = total;
            var shipment = new ParticipantId(ParticipantKind.Shipment, $"O{t}");
            participants.Add(shipment);
            var plan = new TxPlan
            {
                Tx = tx,
                Participants = participants,
                Amounts = amounts,
                Shipment = new ShipmentDetails { OrderId = $"O{t}", Address = $"{t} Simulation Way", Items = items },
            };
            AddShipment(shipment, plan);
            var coordinator = new SimCoordinator(tx, plan, _options);
            _coordinators.Add(coordinator);
            _coordinatorsByTx[tx] = coordinator;
            var submitAt = t < _settings.Transactions
                ? Random(TimeSpan.Zero, _settings.FaultPhase * 0.6)
                : _settings.FaultPhase + Random(TimeSpan.Zero, _settings.LateOrderWindow);
            Schedule(submitAt, new SubmitOrder(tx, Retry: false));
        }
        Schedule(SweepInterval, new InquirySweep());
    }

    private void AddCounter(ParticipantId id, long initial, string shortage)
    {
        var name = id.ToString();
        _initial[name] = initial;
        Add(new SimParticipant<EscrowCounter, long>(
            id,
            new EscrowRules(shortage),
            new EscrowCounter { Exists = true, Committed = initial },
            tx => _coordinatorsByTx[tx].Plan.Amounts[name],
            _options.DecisionRetention,
            checkResource: (who, counter, reserved, _) =>
            {
                if (counter.Committed < 0) throw new SimulationViolation($"{who}: committed {counter.Committed} is negative");
                if (reserved.Sum() > counter.Committed) throw new SimulationViolation($"{who}: reservations {reserved.Sum()} exceed committed {counter.Committed}");
                if (counter.Committed + counter.ConsumedTotal != initial)
                    throw new SimulationViolation($"{who}: committed {counter.Committed} + consumed {counter.ConsumedTotal} != initial {initial}");
            },
            checkFinal: (counter, committedHere, _) =>
            {
                var expected = committedHere.Sum(tx => _coordinatorsByTx[tx].Plan.Amounts[name]);
                if (counter.ConsumedTotal != expected)
                    throw new SimulationViolation($"{name}: consumed {counter.ConsumedTotal}, but the transactions it committed [{string.Join(",", committedHere)}] sum to {expected}");
                if (counter.Committed + counter.ConsumedTotal != initial)
                    throw new SimulationViolation($"{name}: committed {counter.Committed} + consumed {counter.ConsumedTotal} != initial {initial}");
            },
            describe: c => $"committed {c.Committed} consumed {c.ConsumedTotal} of {initial}"));
    }

    private void AddShipment(ParticipantId id, TxPlan plan)
    {
        Add(new SimParticipant<ShipmentRecord, ShipmentDetails>(
            id,
            new ShipmentRules(),
            new ShipmentRecord(),
            _ => plan.Shipment,
            _options.DecisionRetention,
            checkResource: (who, shipment, tentative, decision) =>
            {
                if (tentative.Count > 1) throw new SimulationViolation($"{who}: {tentative.Count} tentative shipments");
                if (shipment.Status == ShipmentStatus.Confirmed && decision(shipment.TransactionId!) != Decision.Commit)
                    throw new SimulationViolation($"{who}: confirmed by {shipment.TransactionId} whose durable decision is {decision(shipment.TransactionId!)}");
            },
            checkFinal: (shipment, committedHere, decision) =>
            {
                var committed = decision(plan.Tx) == Decision.Commit;
                if (committed != (shipment.Status == ShipmentStatus.Confirmed))
                    throw new SimulationViolation($"{id}: shipment {shipment.Status} but {plan.Tx} durably decided {decision(plan.Tx)}");
            },
            describe: s => $"{s.Status} by {s.TransactionId}"));
    }

    private void Add(SimParticipant participant)
    {
        _participants.Add(participant);
        _participantsByName[participant.Name] = participant;
    }

    private Decision DurableDecision(string tx) => _coordinatorsByTx[tx].DurableDecision;

    // ---------------------------------------------------------------- the loop

    private void Loop()
    {
        var faultEnd = Epoch + _settings.FaultPhase;
        var quietLimit = faultEnd + _settings.QuietPhaseLimit;
        while (_queue.TryPeek(out _, out var key))
        {
            if (_faults && key.At >= faultEnd)
            {
                _faults = false;
                Note("quiet phase begins");
            }
            if (!_faults && _pendingNonSweep == 0 && Settled()) return;
            if (key.At > quietLimit)
                throw new SimulationViolation($"not quiescent {_settings.QuietPhaseLimit.TotalSeconds:0} s after the faults stopped ({_pendingNonSweep} events pending); unsettled: " +
                    string.Join(", ", _coordinators.Where(c => c.Machine.Phase is not (CoordinatorPhase.Idle or CoordinatorPhase.Completed) && !(c.Machine.Phase == CoordinatorPhase.Decided && c.Machine.Record.PresumedAbort))
                        .Select(c => $"{c.Tx} in {c.Machine.Phase}")
                        .Concat(_duplicates.Values.Where(d => d.Active).Select(d => $"duplicate of {d.Tx} in {d.Machine.Phase}"))
                        .Concat(_participants.Where(p => p.LivePrepared > 0).Select(p => $"{p.Name} with {p.LivePrepared} prepared"))));

            var ev = _queue.Dequeue();
            _now = key.At;
            _step++;
            if (ev is not InquirySweep) _pendingNonSweep--;
            Note(ev.ToString());

            if (_faults) InjectCrashes();
            Handle(ev);
            CheckInvariants();
        }
        throw new SimulationViolation("the event queue ran dry");
    }

    private bool Settled() =>
        _participants.All(p => p.LivePrepared == 0) &&
        _duplicates.Values.All(d => !d.Active) &&
        _coordinators.All(c => c.Machine.Phase switch
        {
            CoordinatorPhase.Idle or CoordinatorPhase.Completed => true,
            CoordinatorPhase.Decided => c.Machine.Record.PresumedAbort,
            _ => false,
        });

    private void InjectCrashes()
    {
        if (Chance(_settings.CoordinatorCrashRate))
        {
            // Now and then aim at a coordinator whose write is in flight: the write may or may not land.
            var writing = _coordinators.Where(c => c.WriteInFlight is not null).ToList();
            var begun = writing.Count > 0 && Chance(0.3)
                ? writing
                : _coordinators.Where(c => c.Begins > 0 || c.Machine.Phase != CoordinatorPhase.Idle).ToList();
            if (begun.Count > 0) CrashCoordinator(begun[_random.Next(begun.Count)], "random crash");
        }
        if (Chance(_settings.ParticipantCrashRate))
            CrashParticipant(_participants[_random.Next(_participants.Count)], "random crash");
    }

    private void Handle(SimEvent ev)
    {
        switch (ev)
        {
            case SubmitOrder submit: OnSubmit(_coordinatorsByTx[submit.Tx], submit.Retry); break;
            case PrepareTimerFired timer: OnPrepareTimer(_coordinatorsByTx[timer.Tx], timer.Incarnation); break;
            case AckTimedOut timeout: OnAckTimeout(_coordinatorsByTx[timeout.Tx], timeout); break;
            case WriteFinished write: OnWriteFinished(_coordinatorsByTx[write.Tx], write); break;
            case ReloadCoordinator reload: OnReload(_coordinatorsByTx[reload.Tx], reload.Incarnation); break;
            case RecoveryTick tick: OnRecoveryTick(_coordinatorsByTx[tick.Tx], tick.Incarnation); break;
            case InquirySweep: OnInquirySweep(); break;
            case DuplicateBegin begin: OnDuplicateBegin(_coordinatorsByTx[begin.Tx]); break;
            case DuplicateTimerFired timer: OnDuplicateTimer(timer.Tx); break;
            case Deliver { Message: PrepareMessage m }: OnPrepare(m); break;
            case Deliver { Message: VoteMessage m }: OnVote(m); break;
            case Deliver { Message: DecisionMessage m }: OnDecision(m); break;
            case Deliver { Message: AckMessage m }: OnAck(m); break;
            case Deliver { Message: InquiryMessage m }: OnInquiry(m); break;
            default: throw new InvalidOperationException($"unhandled event {ev}");
        }
    }

    // ---------------------------------------------------------------- coordinator host

    private void OnSubmit(SimCoordinator c, bool retry)
    {
        // Like the grain: only an idle coordinator begins; otherwise the recorded outcome is returned.
        if (c.Machine.Phase != CoordinatorPhase.Idle) { Count(retry ? "client retry found a record" : "submit found a record"); return; }
        c.Begins++;
        if (retry) Count("client retry began again");
        c.ClientWaiting = true;
        Execute(c, c.Machine.Begin($"fp-{c.Tx}", c.Plan.Participants, _now));
    }

    private void OnPrepareTimer(SimCoordinator c, int incarnation)
    {
        if (incarnation != c.Incarnation) return;
        Execute(c, c.Machine.OnPrepareDeadline(_now));
    }

    private void OnVote(VoteMessage m)
    {
        if (m.Duplicate) { OnDuplicateVote(m); return; }
        var c = _coordinatorsByTx[m.Tx];
        Execute(c, m.CallFailed ? c.Machine.OnPrepareFailed(m.Participant, m.Reason ?? "call failed", _now) : c.Machine.OnVote(m.Participant, m.Vote, m.Reason, _now));
    }

    private void OnAck(AckMessage m)
    {
        var c = _coordinatorsByTx[m.Tx];
        Execute(c, c.Machine.OnDecisionAcknowledged(m.Participant, _now));
    }

    private void OnAckTimeout(SimCoordinator c, AckTimedOut timeout)
    {
        if (timeout.Incarnation != c.Incarnation) return;
        Execute(c, c.Machine.OnDecisionDeliveryFailed(timeout.Participant, timeout.Attempt));
    }

    private void OnInquiry(InquiryMessage m)
    {
        var c = _coordinatorsByTx[m.Tx];
        var result = c.Machine.OnInquiry(_now);
        Execute(c, result.Actions);
        if (result.Pending) { Count("inquiry pending"); return; }
        if (result.Decision != c.DurableDecision)
            throw new SimulationViolation($"{c.Tx}: inquiry answered {result.Decision} but the durable decision is {c.DurableDecision}");
        Count("inquiry answered");
        // Like QueryOutcome: the decision and the attempt it decided (null for a presumed abort).
        Send(new DecisionMessage(m.Tx, m.Participant, result.Decision, Attempt: 0, c.Machine.Record.PrepareDeadline));
    }

    private void OnWriteFinished(SimCoordinator c, WriteFinished write)
    {
        if (write.Incarnation != c.Incarnation) return; // resolved when that incarnation crashed
        c.WriteInFlight = null;
        if (write.Result != WriteResult.FailedNotWritten) PersistCoordinator(c, write.Snapshot);
        if (write.Result == WriteResult.Ok)
        {
            if (write.Completion) c.Machine.OnCompletionPersisted();
            else Execute(c, c.Machine.OnDecisionPersisted());
            return;
        }
        if (write.Completion)
        {
            Count("completion write failed");
            c.Machine.OnCompletionPersistFailed();
            // Harmless: the decision stays durable. A later recovery tick on the live machine finishes it
            // (CoordinatorMachineTests.Resume_AfterACompletionWriteFailure_FinishesTheTransaction).
            Schedule(Random(TimeSpan.FromMilliseconds(50), TimeSpan.FromMilliseconds(500)), new RecoveryTick(c.Tx, c.Incarnation));
        }
        else
        {
            Count("decision write failed");
            c.Machine.OnDecisionPersistFailed();
            if (c.Machine.Phase != CoordinatorPhase.InDoubt) throw new SimulationViolation($"{c.Tx}: not in doubt after a failed decision write");
            // The client hears "in doubt"; the host must reload the record before doing anything else.
            MaybeClientRetry(c);
            Schedule(Random(TimeSpan.FromMilliseconds(5), TimeSpan.FromMilliseconds(300)), new ReloadCoordinator(c.Tx, c.Incarnation));
        }
    }

    private void OnReload(SimCoordinator c, int incarnation)
    {
        if (incarnation != c.Incarnation) return;
        Restart(c);
    }

    private void OnRecoveryTick(SimCoordinator c, int incarnation)
    {
        if (incarnation != c.Incarnation) return;
        Execute(c, c.Machine.Resume(_now));
    }

    private void CrashCoordinator(SimCoordinator c, string why)
    {
        Count("coordinator crash");
        Note($"CRASH coordinator {c.Tx} in {c.Machine.Phase} ({why})");
        if (c.WriteInFlight is { } inFlight && Chance(0.5))
        {
            Count("write landed during crash");
            PersistCoordinator(c, inFlight);
        }
        MaybeClientRetry(c);
        Restart(c);
    }

    /// <summary>A client that got no answer (or "in doubt") may place the same order again later.</summary>
    private void MaybeClientRetry(SimCoordinator c)
    {
        if (!c.ClientWaiting) return;
        c.ClientWaiting = false;
        if (Chance(_settings.ClientRetryRate))
            Schedule(Random(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(3)), new SubmitOrder(c.Tx, Retry: true));
    }

    /// <summary>A new activation: everything in memory is gone; the machine is rebuilt from storage and resumes.</summary>
    private void Restart(SimCoordinator c)
    {
        c.WriteInFlight = null;
        c.Incarnation++;
        c.Machine = new CoordinatorMachine(c.Tx, _options, c.DurableRecord is null ? null : Durable.Copy(c.DurableRecord));
        var expected = c.DurableRecord switch
        {
            null => CoordinatorPhase.Idle,
            { IsCompleted: true } => CoordinatorPhase.Completed,
            _ => CoordinatorPhase.Decided,
        };
        if (c.Machine.Phase != expected) throw new SimulationViolation($"{c.Tx}: restarted in {c.Machine.Phase}, expected {expected}");
        if (c.Machine.Phase == CoordinatorPhase.Decided) Execute(c, c.Machine.Resume(_now));
    }

    private void PersistCoordinator(SimCoordinator c, CoordinatorRecord snapshot)
    {
        if (snapshot.Decision == Decision.None) throw new SimulationViolation($"{c.Tx}: a record without a decision was written");
        if (c.DurableDecision != Decision.None && snapshot.Decision != c.DurableDecision)
            throw new SimulationViolation($"{c.Tx}: durable decision changed from {c.DurableDecision} to {snapshot.Decision}");
        if (c.DurableRecord is { PresumedAbort: true } && !snapshot.PresumedAbort)
            throw new SimulationViolation($"{c.Tx}: a presumed abort was overwritten by a regular record");
        c.DurableRecord = Durable.Copy(snapshot);
        if (c.DurableDecision == Decision.None)
        {
            Count(snapshot.PresumedAbort ? "presumed abort" : snapshot.Decision == Decision.Commit ? "commit decided" : "abort decided");
            // Now and then a duplicate activation, which never saw this record, begins the transaction again.
            if (Chance(_settings.DuplicateActivationRate))
                Schedule(Random(TimeSpan.Zero, _settings.DuplicateActivationMaxDelay), new DuplicateBegin(c.Tx));
        }
        c.DurableDecision = snapshot.Decision;
    }

    private void Execute(SimCoordinator c, IReadOnlyList<CoordinatorAction> actions)
    {
        foreach (var action in actions)
        {
            switch (action)
            {
                case SendPrepare prepare:
                    Send(new PrepareMessage(c.Tx, prepare.Participant, prepare.Deadline));
                    break;

                case StartPrepareTimer timer:
                    Schedule(TimerDelay(timer.Deadline), new PrepareTimerFired(c.Tx, c.Incarnation));
                    break;

                case PersistDecision persist:
                    if (persist.Decision != c.Machine.Record.Decision)
                        throw new SimulationViolation($"{c.Tx}: asked to persist {persist.Decision} but the record says {c.Machine.Record.Decision}");
                    if (persist.Decision == Decision.Commit)
                        foreach (var p in c.Plan.Participants)
                        {
                            var status = _participantsByName[p.ToString()].DurableStatus(c.Tx);
                            if (status != ParticipantTransactionStatus.Prepared)
                                throw new SimulationViolation($"{c.Tx}: commit decided while {p} is durably {status}, not prepared");
                        }
                    StartWrite(c, completion: false);
                    if (_settings.BugSendDecisionBeforeItIsDurable)
                        foreach (var p in c.Machine.Record.Participants)
                            Send(new DecisionMessage(c.Tx, p.Id, persist.Decision, Attempt: 1, c.Machine.Record.PrepareDeadline));
                    break;

                case ReplyToClient reply:
                    if (c.DurableRecord?.Decision != reply.Outcome.Decision)
                        throw new SimulationViolation($"{c.Tx}: client told {reply.Outcome.Decision} while the durable decision is {c.DurableRecord?.Decision}");
                    if (c.Machine.Record.PresumedAbort) throw new SimulationViolation($"{c.Tx}: a presumed abort replied to a client");
                    c.Replies.Add(reply.Outcome.Decision);
                    c.ClientWaiting = false;
                    Count(reply.Outcome.Decision == Decision.Commit ? "client told commit" : "client told abort");
                    break;

                case SendDecision send:
                    if (send.Decision != c.DurableDecision)
                        throw new SimulationViolation($"{c.Tx}: {send.Decision} sent to {send.Participant} before it was durable (durable: {c.DurableDecision})");
                    var expectedDelay = send.Attempt <= 1 ? TimeSpan.Zero : _options.RetryDelay(send.Attempt - 1);
                    if (send.Delay != expectedDelay || send.Delay > _options.RetryMaxDelay)
                        throw new SimulationViolation($"{c.Tx}: attempt {send.Attempt} to {send.Participant} delayed {send.Delay}, expected {expectedDelay}");
                    if (send.Attempt > 1) Count("phase-two retry");
                    Send(new DecisionMessage(c.Tx, send.Participant, send.Decision, send.Attempt, c.Machine.Record.PrepareDeadline), send.Delay);
                    Schedule(send.Delay + AckTimeout, new AckTimedOut(c.Tx, c.Incarnation, send.Participant, send.Attempt));
                    break;

                case PersistCompletion:
                    if (c.DurableDecision == Decision.None) throw new SimulationViolation($"{c.Tx}: completion before any durable decision");
                    if (c.Machine.Record.Participants.Any(p => !p.Acknowledged)) throw new SimulationViolation($"{c.Tx}: completion with unacknowledged participants");
                    StartWrite(c, completion: true);
                    break;

                default:
                    throw new InvalidOperationException($"unknown action {action}");
            }
        }
    }

    private void StartWrite(SimCoordinator c, bool completion)
    {
        if (c.WriteInFlight is not null) throw new SimulationViolation($"{c.Tx}: a second write started while one is in flight");
        var snapshot = Durable.Copy(c.Machine.Record);
        c.WriteInFlight = snapshot;
        var result = WriteResult.Ok;
        if (_faults && Chance(_settings.WriteFailureRate)) result = Chance(0.5) ? WriteResult.FailedNotWritten : WriteResult.FailedButWritten;
        Schedule(Random(TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(10)), new WriteFinished(c.Tx, c.Incarnation, completion, snapshot, result));
    }

    private TimeSpan TimerDelay(DateTimeOffset deadline)
    {
        var due = deadline - _now;
        if (!_faults) return due;
        var roll = _random.NextDouble();
        if (roll < _settings.EarlyTimerRate) { Count("timer early"); return Random(TimeSpan.Zero, due); }
        if (roll < _settings.EarlyTimerRate + _settings.LateTimerRate) { Count("timer late"); return due + Random(TimeSpan.Zero, TimeSpan.FromMilliseconds(800)); }
        return due;
    }

    // ---------------------------------------------------------------- duplicate coordinator activation

    private void OnDuplicateBegin(SimCoordinator c)
    {
        if (c.DurableRecord is null) throw new SimulationViolation($"{c.Tx}: a duplicate activation was scheduled before any decision was durable");
        if (_duplicates.TryGetValue(c.Tx, out var running) && running.Active) return;
        var d = new SimDuplicate(c.Tx, _options);
        _duplicates[c.Tx] = d;
        Count("duplicate activation began");
        Note($"DUPLICATE activation of {c.Tx} begins (primary {c.Machine.Phase}, durable {c.DurableDecision})");
        var actions = d.Machine.Begin($"fp-{c.Tx}", c.Plan.Participants, _now);
        if (d.Machine.Record.PrepareDeadline == c.DurableRecord.PrepareDeadline)
            throw new SimulationViolation($"{c.Tx}: the duplicate activation's attempt has the same deadline as the decided one");
        ExecuteDuplicate(d, actions);
    }

    private void OnDuplicateVote(VoteMessage m)
    {
        if (!_duplicates.TryGetValue(m.Tx, out var d) || !d.Active) return; // deactivated: nobody awaits the reply
        ExecuteDuplicate(d, m.CallFailed ? d.Machine.OnPrepareFailed(m.Participant, m.Reason ?? "call failed", _now) : d.Machine.OnVote(m.Participant, m.Vote, m.Reason, _now));
    }

    private void OnDuplicateTimer(string tx)
    {
        if (!_duplicates.TryGetValue(tx, out var d) || !d.Active) return;
        ExecuteDuplicate(d, d.Machine.OnPrepareDeadline(_now));
    }

    private void ExecuteDuplicate(SimDuplicate d, IReadOnlyList<CoordinatorAction> actions)
    {
        foreach (var action in actions)
        {
            switch (action)
            {
                case SendPrepare prepare:
                    Send(new PrepareMessage(d.Tx, prepare.Participant, prepare.Deadline, Duplicate: true));
                    break;
                case StartPrepareTimer timer:
                    Schedule(TimerDelay(timer.Deadline), new DuplicateTimerFired(d.Tx));
                    break;
                case PersistDecision persist:
                    // A versioned insert: it fails because the primary's record exists. Nothing is sent; the
                    // activation deactivates and later calls reach the primary (which holds the record).
                    var primary = _coordinatorsByTx[d.Tx];
                    if (primary.DurableRecord is null) throw new SimulationViolation($"{d.Tx}: the duplicate activation's insert would have succeeded");
                    Count($"duplicate insert refused ({persist.Decision})");
                    Count("duplicate insert refused");
                    Note($"DUPLICATE {d.Tx}: insert of {persist.Decision} refused, the record says {primary.DurableDecision}");
                    d.Machine.OnDecisionPersistFailed();
                    if (d.Machine.Phase != CoordinatorPhase.InDoubt) throw new SimulationViolation($"{d.Tx}: duplicate not in doubt after a failed insert");
                    d.Active = false;
                    break;
                default:
                    throw new SimulationViolation($"{d.Tx}: the duplicate activation asked for {action} without any durable decision of its own");
            }
        }
    }

    // ---------------------------------------------------------------- participant host

    private void OnPrepare(PrepareMessage m)
    {
        var p = _participantsByName[m.Participant.ToString()];
        var result = p.Prepare(m.Tx, m.Deadline, _now);
        Count($"prepare {result.Case}");
        if (m.Duplicate) Count($"duplicate prepare {result.Case}");
        if (result.MustPersist)
        {
            if (_faults && Chance(_settings.CrashBeforePersistRate)) { CrashParticipant(p, "before writing its prepare"); return; }
            if (!_settings.BugVoteYesBeforePrepareIsDurable) PersistParticipant(p);
        }
        if (_faults && Chance(_settings.CrashBeforeReplyRate)) { CrashParticipant(p, "before sending its vote"); return; }
        if (_faults && Chance(_settings.PrepareCallFailureRate))
        {
            Count("prepare call failed");
            Send(new VoteMessage(m.Tx, m.Participant, Vote.No, "RPC failure", CallFailed: true, m.Duplicate));
            return;
        }
        Send(new VoteMessage(m.Tx, m.Participant, result.Vote, result.Reason, CallFailed: false, m.Duplicate));
    }

    private void OnDecision(DecisionMessage m)
    {
        var p = _participantsByName[m.Participant.ToString()];
        var result = p.Apply(m.Tx, m.Decision, m.Deadline, inquiryAnswer: m.Attempt == 0, _settings.BugIgnoreAttempts, _now);
        Count($"{m.Decision} {result.Case}");
        var committedHereBefore = _durableOutcomes.GetValueOrDefault((p.Name, m.Tx)) == Decision.Commit;
        if (result.Case == DecisionCase.Applied && m.Decision == Decision.Commit && committedHereBefore)
            throw new SimulationViolation($"{p.Name}: applied the commit of {m.Tx} a second time");
        // Another attempt is prepared here only once the decided one was applied and its tombstone pruned.
        if (result.Case is DecisionCase.OtherAttempt or DecisionCase.DroppedStaleAttempt && (!committedHereBefore || DurableDecision(m.Tx) != Decision.Commit))
            throw new SimulationViolation($"{p.Name}: {result.Case} for {m.Tx} although it never committed it here (durable decision {DurableDecision(m.Tx)})");
        if (result.Case == DecisionCase.Conflict)
            throw new SimulationViolation($"{p.Name}: told {m.Decision} for {m.Tx} after applying the opposite");
        if (result.Case is DecisionCase.Applied or DecisionCase.Released or DecisionCase.RecordedUnknownRollback && DurableDecision(m.Tx) != m.Decision)
            throw new SimulationViolation($"{p.Name}: applied {m.Decision} to {m.Tx} whose durable decision is {DurableDecision(m.Tx)}");
        if (result.Case == DecisionCase.UnknownCommit && _durableOutcomes.GetValueOrDefault((p.Name, m.Tx)) != Decision.Commit)
            throw new SimulationViolation($"{p.Name}: told to commit {m.Tx}, which it never durably prepared");
        if (result.MustPersist)
        {
            if (_faults && Chance(_settings.CrashBeforePersistRate)) { CrashParticipant(p, $"before writing its {m.Decision}"); return; }
            PersistParticipant(p);
        }
        if (_faults && Chance(_settings.CrashBeforeReplyRate)) { CrashParticipant(p, "before acknowledging"); return; }
        Send(new AckMessage(m.Tx, m.Participant));
    }

    private void OnInquirySweep()
    {
        foreach (var p in _participants)
            foreach (var (tx, coordinator) in p.InDoubt(_now, _options.InDoubtTimeout))
            {
                Count("inquiry sent");
                Send(new InquiryMessage(coordinator, p.Id));
            }
        Schedule(SweepInterval, new InquirySweep());
    }

    private void CrashParticipant(SimParticipant p, string why)
    {
        Count("participant crash");
        Note($"CRASH {p.Name} ({why})");
        p.Crash();
    }

    private void PersistParticipant(SimParticipant p)
    {
        foreach (var (tx, decided) in p.Persist())
        {
            if (_durableOutcomes.TryGetValue((p.Name, tx), out var before) && before != decided.Outcome)
                throw new SimulationViolation($"{p.Name}: durable outcome of {tx} changed from {before} to {decided.Outcome}");
            _durableOutcomes[(p.Name, tx)] = decided.Outcome;
        }
    }

    // ---------------------------------------------------------------- network and time

    private void Send(Message message, TimeSpan extraDelay = default)
    {
        if (_faults && Chance(_settings.DropRate)) { Count("message dropped"); return; }
        Schedule(extraDelay + NetworkDelay(), new Deliver(message));
        if (_faults && Chance(_settings.DuplicateRate))
        {
            Count("message duplicated");
            Schedule(extraDelay + NetworkDelay(), new Deliver(message));
        }
    }

    private TimeSpan NetworkDelay()
    {
        if (!_faults) return Random(TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(10));
        if (Chance(_settings.LongDelayRate)) { Count("message delayed long"); return Random(TimeSpan.FromMilliseconds(300), TimeSpan.FromSeconds(3)); }
        return Random(TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(40));
    }

    private void Schedule(TimeSpan after, SimEvent ev)
    {
        if (after < TimeSpan.Zero) after = TimeSpan.Zero;
        if (ev is not InquirySweep) _pendingNonSweep++;
        _queue.Enqueue(ev, (_now + after, _seq++));
    }

    private bool Chance(double probability) => _random.NextDouble() < probability;

    private TimeSpan Random(TimeSpan min, TimeSpan max) => max <= min ? min : min + TimeSpan.FromTicks((long)(_random.NextDouble() * (max - min).Ticks));

    private void Count(string what) => _stats[what] = _stats.GetValueOrDefault(what) + 1;

    private void Note(string what)
    {
        if (_trace.Count == TraceLength) _trace.Dequeue();
        _trace.Enqueue($"#{_step} t={(_now - Epoch).TotalMilliseconds:0}: {what}");
    }

    // ---------------------------------------------------------------- invariants

    private void CheckInvariants()
    {
        foreach (var p in _participants) p.Check(DurableDecision);
        foreach (var c in _coordinators)
        {
            if (c.Machine.Phase is CoordinatorPhase.Decided or CoordinatorPhase.Completing or CoordinatorPhase.Completed)
            {
                if (c.DurableRecord is null)
                    throw new SimulationViolation($"{c.Tx}: in {c.Machine.Phase} with nothing durable");
                if (c.DurableRecord.Decision != c.Machine.Record.Decision)
                    throw new SimulationViolation($"{c.Tx}: live decision {c.Machine.Record.Decision} differs from durable {c.DurableRecord.Decision}");
            }
            foreach (var reply in c.Replies)
                if (reply != c.DurableDecision)
                    throw new SimulationViolation($"{c.Tx}: client was told {reply}, durable decision is {c.DurableDecision}");
        }
    }

    private void CheckFinal()
    {
        CheckInvariants();
        var committedAt = _participants.ToDictionary(p => p.Name, _ => new List<string>());
        foreach (var ((participant, tx), outcome) in _durableOutcomes)
            if (outcome == Decision.Commit) committedAt[participant].Add(tx);

        foreach (var c in _coordinators)
        {
            var decision = c.DurableDecision;
            var committedBy = c.Plan.Participants.Where(p => _durableOutcomes.GetValueOrDefault((p.ToString(), c.Tx)) == Decision.Commit).ToList();
            if (decision == Decision.Commit && committedBy.Count != c.Plan.Participants.Count)
                throw new SimulationViolation($"{c.Tx}: committed, but only {committedBy.Count} of {c.Plan.Participants.Count} participants applied it ({string.Join(", ", committedBy)})");
            if (decision != Decision.Commit && committedBy.Count > 0)
                throw new SimulationViolation($"{c.Tx}: durable decision {decision}, yet {string.Join(", ", committedBy)} committed it");
            if (decision != Decision.None && !c.DurableRecord!.PresumedAbort)
            {
                if (!c.DurableRecord.IsCompleted || c.Machine.Phase != CoordinatorPhase.Completed)
                    throw new SimulationViolation($"{c.Tx}: {decision} never completed (phase {c.Machine.Phase}, unacknowledged: {string.Join(", ", c.Machine.Record.Participants.Where(p => !p.Acknowledged).Select(p => p.Participant))})");
                Count(decision == Decision.Commit ? "transactions committed" : "transactions aborted");
            }
            else if (decision == Decision.None) Count("transactions never decided");
            foreach (var reply in c.Replies)
                if (reply != decision) throw new SimulationViolation($"{c.Tx}: client was told {reply}, final durable decision is {decision}");
        }
        foreach (var p in _participants) p.CheckFinal(DurableDecision, committedAt[p.Name]);
    }

    private IEnumerable<string> Describe() =>
        _coordinators.Select(c => $"{c.Tx}: phase {c.Machine.Phase}, durable {c.DurableDecision}{(c.DurableRecord?.PresumedAbort == true ? " (presumed)" : "")}, completed {c.DurableRecord?.IsCompleted == true}, replies [{string.Join(",", c.Replies)}], participants [{string.Join(", ", c.Plan.Participants)}]")
            .Concat(_duplicates.Values.Select(d => $"duplicate activation of {d.Tx}: {(d.Active ? "active" : "deactivated")} in {d.Machine.Phase}, deadline {d.Machine.Record.PrepareDeadline:HH:mm:ss.fff}"))
            .Concat(_participants.Select(p => p.Describe()));

    private string Digest()
    {
        var text = new StringBuilder().Append(_step).Append('|').Append(_now.Ticks).Append('\n');
        foreach (var line in Describe()) text.Append(line).Append('\n');
        foreach (var (key, value) in _stats.OrderBy(s => s.Key, StringComparer.Ordinal)) text.Append(key).Append('=').Append(value).Append('\n');
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }
}
