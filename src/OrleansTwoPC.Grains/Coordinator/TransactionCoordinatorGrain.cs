using OrleansTwoPC.Grains.Placement;
using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OrleansTwoPC.Grains.Errors;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Grains.Telemetry;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;
using Orleans.Core;
using Orleans.Storage;

namespace OrleansTwoPC.Grains.Coordinator;

/// <summary>
/// Coordinator of one transaction (key = transaction id, derived from the order id). A thin shell around
/// <see cref="CoordinatorMachine"/>: it validates the order, sends what the machine says to send, persists
/// the decision with a versioned write before anybody hears it, answers the caller, and delivers the
/// decision in the background until every participant acknowledged.
/// </summary>
/// <remarks>
/// <b>No read on the happy path.</b> An activation does not read its record when it starts: an order placed on
/// it runs provisionally, as if no record existed, and its decision is written as an insert (no version yet). The
/// database refuses that insert when a record exists (a resubmitted order whose coordinator had deactivated, or a
/// duplicate activation that decided first): the activation then reads the durable record and answers from it,
/// never from its own attempt, and its own attempt's reservations are released by the participants' in-doubt
/// inquiry, which names the decided attempt. Every other entry point (inquiry, recovery, report, heuristic
/// abort) and a rejection's rollbacks read the record first.
/// </remarks>
[ServiceRolePlacement(ServiceRoles.Coordinator)]
public sealed class TransactionCoordinatorGrain : Grain, ITransactionCoordinatorGrain
{
    private readonly IGrainStorage _storage;
    private IStorage<CoordinatorRecord> _state = null!;

    // False until this activation has read its record or written one: what it knows is provisional until then.
    private bool _loaded;
    private readonly ProtocolOptions _options;
    private readonly TimeProvider _time;
    private readonly CrashInjector _crashes;
    private readonly ILogger<TransactionCoordinatorGrain> _logger;
    private readonly HashSet<ParticipantId> _delivering = new();
    // Phase-two loops belong to this activation: they stop when it is deactivated (the sweep takes over).
    private readonly CancellationTokenSource _lifetime = new();

    /// <summary>After this many failed sends in one activation, delivery is left to the recovery sweep,
    /// which resumes it from the durable record (so a dead or invalid activation cannot retry forever).</summary>
    private const int MaxDeliveryAttemptsPerActivation = 30;

    /// <summary>How long a rejection waits for its rollbacks: the prepare phase may already have used the
    /// whole prepare timeout, and the caller's answer must come within <see cref="PlaceOrderTimeouts.Response"/>.</summary>
    private static readonly TimeSpan RejectRollbackWait = TimeSpan.FromSeconds(1);
    private CoordinatorMachine _machine = null!;
    private OrderPlan? _plan;
    private bool _writingCompletion;

    // What the silos of the cluster host, read in memory to refuse an order whose service is down.
    private readonly IClusterMembershipService _membership;
    private readonly SiloRoleLookup _siloRoles;

    // SKUs and accounts this silo has seen exist: asked of their participant only the first time.
    private readonly ExistingResourceCache _existing;

    public TransactionCoordinatorGrain(
        [FromKeyedServices(StorageNames.Coordinator)] IGrainStorage storage,
        IOptions<ProtocolOptions> options,
        TimeProvider time,
        CrashInjector crashes,
        IClusterMembershipService membership,
        SiloRoleLookup siloRoles,
        ExistingResourceCache existing,
        ILogger<TransactionCoordinatorGrain> logger)
    {
        _existing = existing;
        _storage = storage;
        _options = options.Value;
        _time = time;
        _crashes = crashes;
        _membership = membership;
        _siloRoles = siloRoles;
        _logger = logger;
    }

    private string TransactionId => this.GetPrimaryKeyString();
    private DateTimeOffset Now => _time.GetUtcNow();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // Not Orleans' [PersistentState], which reads on activation: this one reads only when asked to.
        _state = new StateStorageBridge<CoordinatorRecord>(StateNames.Coordinator, GrainContext, _storage);
        _machine = new CoordinatorMachine(TransactionId, _options, null);
        return Task.CompletedTask;
    }

    /// <summary>Reads the record unless this activation already knows it; resumes phase two of a durable decision.</summary>
    private async Task EnsureLoaded(string why)
    {
        if (_loaded) return;
        await ReadRecord();
        if (_machine.Phase is CoordinatorPhase.Decided or CoordinatorPhase.Completing)
        {
            _logger.LogInformation("Recovery {TransactionId}: record read ({Why}) with durable decision {Decision}, resuming phase two", TransactionId, why, _machine.Record.Decision);
            Execute(_machine.Resume(Now));
        }
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        _lifetime.Cancel();
        return Task.CompletedTask;
    }

    public async Task<OrderOutcome> PlaceOrder(OrderRequest order)
    {
        // One trace per transaction: prepare, decision and phase two (and, with Orleans activity
        // propagation, the participants' prepares) are children of this activity.
        using var transaction = TwoPcTelemetry.ActivitySource.StartActivity(TwoPcTelemetry.TransactionActivity);
        transaction?.SetTag(TwoPcTelemetry.TransactionTag, TransactionId);
        var outcome = await PlaceOrderCore(order);
        transaction?.SetTag("twopc.status", outcome.Status.ToString());
        if (outcome.Status is OrderStatus.Rejected or OrderStatus.Unavailable or OrderStatus.InDoubt)
            transaction?.SetStatus(ActivityStatusCode.Error, outcome.Reason);
        return outcome;
    }

    private async Task<OrderOutcome> PlaceOrderCore(OrderRequest order)
    {
        OrderPlan plan;
        try
        {
            plan = OrderPlan.Create(order);
        }
        catch (OrderValidationException ex)
        {
            _logger.LogWarning("Order rejected {TransactionId}: {Reason}", TransactionId, ex.Message);
            TwoPcTelemetry.RecordRejected();
            return OrderOutcome.Rejected(order?.OrderId ?? "", ex.Message);
        }
        if (plan.TransactionId != TransactionId)
        {
            TwoPcTelemetry.RecordRejected();
            return OrderOutcome.Rejected(order.OrderId, $"order {order.OrderId} belongs to coordinator {plan.TransactionId}, not {TransactionId}");
        }

        if (_machine.Phase == CoordinatorPhase.InDoubt) await Reload("resubmission after a failed decision write");
        if (_machine.Phase != CoordinatorPhase.Idle) return Resubmitted(plan);

        // No grain call before the prepares: a participant whose SKU or account does not exist votes no
        // with Refusals.UnknownResource, and the machine turns that into a rejection (see RejectOrder). Only
        // a service with no silo at all is refused up front, from what this silo knows of the cluster.
        var participants = Participants(plan);
        if (DownService(participants) is { } down)
        {
            _logger.LogWarning("Order not started {TransactionId}: {Reason}", TransactionId, down);
            return new OrderOutcome(order.OrderId, TransactionId, OrderStatus.Unavailable,
                $"a service is unavailable, nothing was started: {down}", Array.Empty<ParticipantVote>(), plan.TotalAmount);
        }
        if (await UnknownResources(participants) is { } unknown)
        {
            _logger.LogWarning("Order rejected {TransactionId}: {Reason}", TransactionId, unknown);
            TwoPcTelemetry.RecordRejected();
            return OrderOutcome.Rejected(order.OrderId, unknown);
        }
        _plan = plan;
        _logger.LogInformation("Begin {TransactionId}: {ParticipantCount} participants, amount {Amount}", TransactionId, participants.Count, plan.TotalAmount);
        var actions = _machine.Begin(plan.Fingerprint, participants, Now, Summary(plan));
        var begun = Stopwatch.GetTimestamp();
        await _crashes.Check(CrashPoint.CoordinatorBeforeAnyPrepare, TransactionId);
        using (var prepare = TwoPcTelemetry.ActivitySource.StartActivity(TwoPcTelemetry.PrepareActivity))
        {
            prepare?.SetTag(TwoPcTelemetry.TransactionTag, TransactionId);
            prepare?.SetTag("twopc.participants", participants.Count);
            var prepareStarted = Stopwatch.GetTimestamp();
            actions = await CollectVotes(actions);
            if (actions.OfType<RejectOrder>().SingleOrDefault() is { } rejection)
            {
                prepare?.SetStatus(ActivityStatusCode.Error, rejection.Reason);
                return await Reject(plan, rejection);
            }
            // Counted here, not at Begin: a rejected order never started a transaction.
            TwoPcTelemetry.Started.Add(1);
            TwoPcTelemetry.PrepareDuration.Record(TwoPcTelemetry.ElapsedSeconds(prepareStarted));
        }

        var decision = actions.OfType<PersistDecision>().Single().Decision;
        await _crashes.Check(CrashPoint.CoordinatorAfterVotesBeforeDecision, TransactionId);
        using (var decisionActivity = TwoPcTelemetry.ActivitySource.StartActivity(TwoPcTelemetry.DecisionActivity))
        {
            decisionActivity?.SetTag(TwoPcTelemetry.TransactionTag, TransactionId);
            decisionActivity?.SetTag(TwoPcTelemetry.DecisionTag, decision.ToString());
            var writeStarted = Stopwatch.GetTimestamp();
            try
            {
                _state.State = _machine.Record;
                await _state.WriteStateAsync();
                _loaded = true;
                TwoPcTelemetry.DecisionWriteDuration.Record(TwoPcTelemetry.ElapsedSeconds(writeStarted));
            }
            catch (InconsistentStateException) when (!_loaded)
            {
                // A record exists: this order was decided before (or by a duplicate activation). Its outcome stands.
                TwoPcTelemetry.DecisionWriteDuration.Record(TwoPcTelemetry.ElapsedSeconds(writeStarted));
                _plan = null;
                _logger.LogWarning("Decision {Decision} not written {TransactionId}: a record exists, answering from it; this attempt's reservations go by inquiry", decision, TransactionId);
                await EnsureLoaded("a record existed when the decision was written");
                if (_machine.Phase != CoordinatorPhase.Idle) return Resubmitted(plan);
                // A row without a record (cleared by hand): nothing is decided, so placing the order again decides it.
                return new OrderOutcome(order.OrderId, TransactionId, OrderStatus.InDoubt,
                    "the decision could not be written over a cleared coordinator row; nothing was decided, placing the same order again decides it",
                    Array.Empty<ParticipantVote>(), plan.TotalAmount);
            }
            catch (Exception ex)
            {
                TwoPcTelemetry.DecisionWriteDuration.Record(TwoPcTelemetry.ElapsedSeconds(writeStarted));
                TwoPcTelemetry.RecordInDoubt();
                TwoPcTelemetry.TransactionDuration.Record(TwoPcTelemetry.ElapsedSeconds(begun));
                decisionActivity?.SetStatus(ActivityStatusCode.Error, ex.Message);
                return DecisionWriteFailed(order, plan, decision, ex);
            }
        }
        _logger.LogInformation("Decision {Decision} written {TransactionId} {AbortReason}", decision, TransactionId, _machine.Record.AbortReason);
        if (decision == Decision.Commit) TwoPcTelemetry.RecordCommitted();
        else TwoPcTelemetry.RecordAborted(_machine.Record.AbortReason);

        var afterDecision = _machine.OnDecisionPersisted();
        var reply = afterDecision.OfType<ReplyToClient>().Single();
        await _crashes.Check(CrashPoint.CoordinatorAfterDecisionBeforePhaseTwo, TransactionId);
        Execute(afterDecision);
        TwoPcTelemetry.TransactionDuration.Record(TwoPcTelemetry.ElapsedSeconds(begun));
        return ToOrderOutcome(reply.Outcome, plan);
    }

    private OrderOutcome DecisionWriteFailed(OrderRequest order, OrderPlan plan, Decision decision, Exception ex)
    {
        _machine.OnDecisionPersistFailed();
        _logger.LogError(ex, "Decision write failed {TransactionId} ({Decision}); outcome in doubt until recovery", TransactionId, decision);
        // One line: Orleans' storage wrapper puts the driver's whole stack trace in its message.
        return new OrderOutcome(order.OrderId, TransactionId, OrderStatus.InDoubt,
            $"the {decision} decision could not be made durable ({ContractErrors.Describe(ex.GetBaseException())}); " +
            "recovery will finish the transaction, and placing the same order again returns its outcome",
            ToVotes(_machine.Outcome()), plan.TotalAmount);
    }

    /// <summary>
    /// The order named a SKU or account that does not exist: nothing was decided and nothing is written.
    /// The participants that prepared are rolled back before the answer (waiting at most
    /// <see cref="RejectRollbackWait"/>), so a rejected order leaves nothing held; a rollback that fails or
    /// is slower is left to the in-doubt sweep (its inquiry finds no record: presumed abort).
    /// </summary>
    private async Task<OrderOutcome> Reject(OrderPlan plan, RejectOrder rejection)
    {
        _plan = null;
        // A rollback names no attempt: before sending one, make sure no decision of another attempt exists.
        if (!_loaded)
        {
            await EnsureLoaded("rejection of a provisional attempt");
            if (_machine.Phase != CoordinatorPhase.Idle)
            {
                _logger.LogWarning("Rejection {TransactionId} not sent: a record exists, answering from it", TransactionId);
                return Resubmitted(plan);
            }
        }
        _logger.LogWarning("Order rejected {TransactionId}: {Reason}", TransactionId, rejection.Reason);
        TwoPcTelemetry.RecordRejected();
        var rollbacks = Task.WhenAll(rejection.RollBack.Select(async participant =>
        {
            try
            {
                await GrainFactory.Participant(participant).Rollback(TransactionId);
            }
            catch (Exception ex)
            {
                _logger.LogWarning("Rollback of rejected {TransactionId} at {Participant} failed, left to recovery: {Error}", TransactionId, participant, ex.GetBaseException().Message);
            }
        }));
        await Task.WhenAny(rollbacks, Task.Delay(RejectRollbackWait < _options.PrepareTimeout ? RejectRollbackWait : _options.PrepareTimeout, _time));
        return OrderOutcome.Rejected(plan.Order.OrderId, TwoPcException.OneLine(rejection.Reason));
    }

    public async Task<TransactionReport> GetReport()
    {
        await EnsureLoaded("report");
        var record = _machine.Record;
        var known = _machine.Phase != CoordinatorPhase.Idle;
        return new TransactionReport(
            TransactionId,
            _machine.Phase.ToString(),
            known ? record.Decision.ToString() : "Unknown (presumed abort)",
            record.AbortReason,
            ToVotes(_machine.Outcome()),
            record.Participants.Where(p => !p.Acknowledged).Select(p => p.Participant).ToList(),
            known ? record.StartedAt : null,
            record.DecidedAt,
            record.CompletedAt);
    }

    public async Task<InquiryReply> QueryOutcome()
    {
        await EnsureLoaded("inquiry");
        if (_machine.Phase == CoordinatorPhase.InDoubt) await Reload("inquiry after a failed decision write");
        var inquiry = _machine.OnInquiry(Now);
        if (inquiry.Actions.OfType<PersistDecision>().Any())
        {
            if (!await PersistPresumedAbort()) return new InquiryReply(InquiryReply.Pending, null);
            _logger.LogWarning("Presumed abort {TransactionId}: asked by a participant, no record; abort made durable", TransactionId);
            return new InquiryReply(InquiryReply.Abort, null);
        }
        _logger.LogInformation("Inquiry answered {TransactionId}: {Decision}", TransactionId, inquiry.Pending ? "pending" : inquiry.Decision);
        if (_machine.Record.IsCompleted) DeactivateOnIdle();
        return inquiry.Pending
            ? new InquiryReply(InquiryReply.Pending, null)
            : new InquiryReply(inquiry.Decision == Decision.Commit ? InquiryReply.Commit : InquiryReply.Abort, _machine.Record.PrepareDeadline);
    }

    public async Task<TransactionReport> Recover()
    {
        await EnsureLoaded("recovery");
        if (_machine.Phase == CoordinatorPhase.InDoubt) await Reload("recovery after a failed decision write");
        var actions = _machine.Resume(Now);
        if (actions.Count > 0)
            _logger.LogInformation("Recovery {TransactionId}: re-sending {Decision} to {Participants}", TransactionId, _machine.Record.Decision,
                string.Join(", ", actions.OfType<SendDecision>().Select(a => a.Participant)));
        Execute(actions);
        // A sweep that listed it before it completed may ask after it left memory: nothing to do, leave again.
        if (actions.Count == 0 && _machine.Record.IsCompleted) DeactivateOnIdle();
        return await GetReport();
    }

    public async Task<TransactionReport> HeuristicAbort(string reason)
    {
        if (string.IsNullOrWhiteSpace(reason)) throw new ArgumentException("a heuristic abort needs a reason", nameof(reason));
        await EnsureLoaded("heuristic abort");
        if (_machine.Phase == CoordinatorPhase.InDoubt) await Reload("heuristic abort after a failed decision write");
        var actions = _machine.HeuristicAbort(reason, Now);
        if (actions.OfType<PersistDecision>().Any())
        {
            if (!await PersistPresumedAbort())
                throw TwoPcException.StorageUnavailable($"the heuristic abort of {TransactionId} could not be made durable (coordinator storage unavailable); nothing was decided");
            _logger.LogWarning("Heuristic decision {TransactionId}: ABORT forced by an operator ({Reason})", TransactionId, reason);
        }
        else
        {
            _logger.LogInformation("Heuristic abort {TransactionId}: already aborted, nothing to do", TransactionId);
        }
        return await GetReport();
    }

    /// <summary>Writes a presumed (or heuristic) abort record; false when the write failed and the outcome is unknown.</summary>
    private async Task<bool> PersistPresumedAbort()
    {
        try
        {
            _state.State = _machine.Record;
            await _state.WriteStateAsync();
            _loaded = true;
            _machine.OnDecisionPersisted();
            TwoPcTelemetry.RecordAborted(_machine.Record.AbortReason);
            return true;
        }
        catch (Exception ex)
        {
            _machine.OnDecisionPersistFailed();
            TwoPcTelemetry.RecordInDoubt();
            _logger.LogError(ex, "Abort record write failed {TransactionId}; it will be reloaded", TransactionId);
            return false;
        }
    }

    /// <summary>Phase one: wait for every vote, the first no or failure, or the deadline, whichever comes first.</summary>
    private async Task<IReadOnlyList<CoordinatorAction>> CollectVotes(IReadOnlyList<CoordinatorAction> actions)
    {
        var inFlight = new Dictionary<Task<VoteReply>, ParticipantId>();
        var timer = Task.CompletedTask;
        DateTimeOffset? attempt = null; // every prepare of one attempt carries its deadline
        foreach (var action in actions)
        {
            switch (action)
            {
                case SendPrepare send:
                    attempt = send.Deadline;
                    _logger.LogDebug("Prepare sent {TransactionId} to {Participant}", TransactionId, send.Participant);
                    inFlight[SendPrepareTo(send)] = send.Participant;
                    if (inFlight.Count == 1) await _crashes.Check(CrashPoint.CoordinatorAfterSomePreparesSent, TransactionId);
                    break;
                case StartPrepareTimer start:
                    var wait = start.Deadline - Now;
                    timer = Task.Delay(wait > TimeSpan.Zero ? wait : TimeSpan.Zero, _time);
                    break;
            }
        }

        while (true)
        {
            var finished = await Task.WhenAny(inFlight.Keys.Cast<Task>().Append(timer));
            IReadOnlyList<CoordinatorAction> next;
            if (finished == timer)
            {
                _logger.LogWarning("Prepare timeout {TransactionId}: no vote from {Participants}", TransactionId, string.Join(", ", inFlight.Values));
                next = _machine.OnPrepareDeadline(Now);
            }
            else
            {
                var vote = (Task<VoteReply>)finished;
                var participant = inFlight[vote];
                inFlight.Remove(vote);
                if (vote.IsCompletedSuccessfully)
                {
                    var reply = vote.Result;
                    _logger.LogDebug("Vote received {TransactionId} from {Participant}: {Vote} {Reason}", TransactionId, participant, reply.Yes ? "yes" : "no", reply.Reason);
                    next = _machine.OnVote(participant, reply.Yes ? Vote.Yes : Vote.No, reply.Reason, Now, attempt);
                }
                else
                {
                    var error = vote.Exception?.GetBaseException();
                    _logger.LogWarning(error, "Prepare failed {TransactionId} at {Participant}", TransactionId, participant);
                    next = _machine.OnPrepareFailed(participant, error is null ? "prepare failed" : ContractErrors.Describe(error), Now);
                }
            }
            if (next.Any(a => a is PersistDecision or RejectOrder))
            {
                foreach (var (late, participant) in inFlight) _ = ObserveLateVote(late, participant);
                return next;
            }
        }
    }

    private async Task ObserveLateVote(Task<VoteReply> vote, ParticipantId participant)
    {
        try
        {
            var reply = await vote;
            _logger.LogInformation("Late vote ignored {TransactionId} from {Participant}: {Vote} {Reason}", TransactionId, participant, reply.Yes ? "yes" : "no", reply.Reason);
        }
        catch (Exception ex)
        {
            _logger.LogInformation("Late prepare failure ignored {TransactionId} from {Participant}: {Error}", TransactionId, participant, ex.GetBaseException().Message);
        }
    }

    /// <summary>Runs the machine's phase-two actions; each delivery retries on its own until acknowledged.</summary>
    private void Execute(IReadOnlyList<CoordinatorAction> actions)
    {
        // With the "after some acknowledgements" crash armed, deliver to one participant only, so the
        // crash really comes after a partial phase two.
        if (_crashes.IsArmed(CrashPoint.CoordinatorAfterSomeAcknowledgements, TransactionId))
            actions = actions.OfType<SendDecision>().Take(1).Cast<CoordinatorAction>().ToList();
        foreach (var action in actions)
        {
            switch (action)
            {
                // One delivery loop per participant: a recovery tick must not start a second one.
                case SendDecision send when _delivering.Add(send.Participant):
                    _ = DeliverDecision(send);
                    break;
                // One write at a time: a recovery tick during the completion write must not start a second.
                case PersistCompletion when !_writingCompletion:
                    _ = WriteCompletion();
                    break;
            }
        }
    }

    private async Task DeliverDecision(SendDecision send)
    {
        // One phase-two span per participant delivery, from the first attempt to the acknowledgement (or hand-off).
        using var phaseTwo = TwoPcTelemetry.ActivitySource.StartActivity(TwoPcTelemetry.PhaseTwoActivity);
        phaseTwo?.SetTag(TwoPcTelemetry.TransactionTag, TransactionId);
        phaseTwo?.SetTag(TwoPcTelemetry.ParticipantTag, send.Participant.ToString());
        phaseTwo?.SetTag(TwoPcTelemetry.DecisionTag, send.Decision.ToString());
        try
        {
            while (true)
            {
                if (send.Attempt > MaxDeliveryAttemptsPerActivation || _lifetime.IsCancellationRequested)
                {
                    _logger.LogWarning("{Decision} delivery to {Participant} for {TransactionId} left to the recovery sweep after {Attempt} attempts",
                        send.Decision, send.Participant, TransactionId, send.Attempt - 1);
                    return;
                }
                if (send.Delay > TimeSpan.Zero)
                {
                    try { await Task.Delay(send.Delay, _time, _lifetime.Token); }
                    catch (OperationCanceledException) { return; }
                }
                IReadOnlyList<CoordinatorAction> next;
                try
                {
                    var participant = GrainFactory.Participant(send.Participant);
                    _logger.LogDebug("{Decision} sent {TransactionId} to {Participant} (attempt {Attempt})", send.Decision, TransactionId, send.Participant, send.Attempt);
                    if (send.Decision == Decision.Commit) await participant.Commit(TransactionId, _machine.Record.PrepareDeadline);
                    else await participant.Rollback(TransactionId);
                    _logger.LogDebug("{Decision} acknowledged {TransactionId} by {Participant}", send.Decision, TransactionId, send.Participant);
                    next = _machine.OnDecisionAcknowledged(send.Participant, Now);
                    if (next.Count == 0) await _crashes.Check(CrashPoint.CoordinatorAfterSomeAcknowledgements, TransactionId);
                }
                catch (Exception ex)
                {
                    next = _machine.OnDecisionDeliveryFailed(send.Participant, send.Attempt);
                    var retry = next.OfType<SendDecision>().FirstOrDefault();
                    if (retry is not null) TwoPcTelemetry.PhaseTwoRetries.Add(1);
                    _logger.LogWarning("{Decision} delivery failed {TransactionId} to {Participant} (attempt {Attempt}), retry in {RetryDelay}: {Error}",
                        send.Decision, TransactionId, send.Participant, send.Attempt, retry?.Delay, ex.GetBaseException().Message);
                }
                var again = next.OfType<SendDecision>().FirstOrDefault();
                if (again is null)
                {
                    _delivering.Remove(send.Participant);
                    Execute(next);
                    return;
                }
                send = again;
            }
        }
        finally
        {
            _delivering.Remove(send.Participant);
        }
    }

    private async Task WriteCompletion()
    {
        _writingCompletion = true;
        try
        {
            _state.State = _machine.Record;
            await _state.WriteStateAsync();
            _machine.OnCompletionPersisted();
            _logger.LogInformation("Completed {TransactionId}: every participant acknowledged {Decision}", TransactionId, _machine.Record.Decision);
            // One coordinator per order: once complete it has nothing left to do, so it does not sit in memory
            // for Orleans' idle time. A resubmission or an inquiry activates it again from its record.
            DeactivateOnIdle();
        }
        catch (Exception ex)
        {
            _machine.OnCompletionPersistFailed();
            _logger.LogWarning(ex, "Completion write failed {TransactionId}; the decision stays durable and recovery will finish", TransactionId);
        }
        finally
        {
            _writingCompletion = false;
        }
    }

    /// <summary>After a failed decision write the record's fate is unknown: read what is durable and go on from there.</summary>
    private async Task Reload(string why)
    {
        await ReadRecord();
        _logger.LogInformation("Recovery {TransactionId}: reloaded ({Why}), phase {Phase}", TransactionId, why, _machine.Phase);
        Execute(_machine.Resume(Now));
    }

    /// <summary>Reads what is durable and puts a machine on it, in place of whatever this activation held.</summary>
    private async Task ReadRecord()
    {
        await _state.ReadStateAsync();
        _loaded = true;
        _machine = new CoordinatorMachine(TransactionId, _options, _state.RecordExists ? _state.State : null);
    }

    private OrderOutcome Resubmitted(OrderPlan plan)
    {
        var record = _machine.Record;
        if (record.PresumedAbort)
            return new OrderOutcome(plan.Order.OrderId, TransactionId, OrderStatus.Aborted, record.AbortReason, Array.Empty<ParticipantVote>(), plan.TotalAmount);
        if (record.Fingerprint != plan.Fingerprint)
        {
            _logger.LogWarning("Order rejected {TransactionId}: resubmitted with different content", TransactionId);
            TwoPcTelemetry.RecordRejected();
            return OrderOutcome.Rejected(plan.Order.OrderId, $"order id {plan.Order.OrderId} was already used for an order with different content");
        }
        _logger.LogInformation("Resubmission {TransactionId}: returning the recorded outcome {Decision}", TransactionId, record.Decision);
        return ToOrderOutcome(_machine.Outcome(), plan);
    }

    /// <summary>
    /// A service this order needs that no active silo hosts (a deployment with a silo per service role,
    /// that service's silos all stopped): its prepare could not even be placed, so the order is refused
    /// before anything is prepared anywhere. Read from the membership snapshot and the silos' published
    /// roles in memory, no grain call; a silo that just died still counts until membership declares it
    /// dead, and then its prepare fails and the transaction aborts.
    /// </summary>
    private string? DownService(IReadOnlyList<ParticipantId> participants)
    {
        var active = _membership.CurrentSnapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active)
            .Select(m => m.SiloAddress)
            .ToList();
        foreach (var role in participants.Select(p => RoleOf(p.Kind)).Distinct())
        {
            var hosted = active.Any(silo => ServiceRoles.Hosts(_siloRoles.Of(silo), role));
            if (!hosted) return $"the {role} service is down: no silo with role '{role}' (or '{ServiceRoles.All}') is running";
        }
        return null;
    }

    /// <summary>
    /// The order's SKUs and account that do not exist, as the rejection reason (SKUs first, like the
    /// participants' own refusal); null when all exist or the check could not tell. Asked before anything is
    /// prepared, so a rejected order writes nothing anywhere and its order id stays unused. Only resources
    /// this silo has not yet seen exist are asked, read-only (a snapshot shows only durable state), all at
    /// once and for at most a prepare timeout. A check that fails or is slow decides nothing: the prepares
    /// go out and the participant's own refusal (<see cref="Protocol.Participant.Refusals.UnknownResource"/>) still rejects.
    /// </summary>
    private async Task<string?> UnknownResources(IReadOnlyList<ParticipantId> participants)
    {
        var toAsk = participants.Where(p => p.Kind != ParticipantKind.Shipment && !_existing.Contains(p)).ToList();
        if (toAsk.Count == 0) return null;
        var checks = toAsk.Select(async p =>
        {
            try
            {
                var snapshot = p.Kind == ParticipantKind.Inventory
                    ? await GrainFactory.GetGrain<IInventoryGrain>(p.Key).GetSnapshot()
                    : await GrainFactory.GetGrain<IPaymentAccountGrain>(p.Key).GetSnapshot();
                if (snapshot.Exists) _existing.Add(p);
                return (Participant: p, Exists: (bool?)snapshot.Exists);
            }
            catch (Exception ex)
            {
                _logger.LogWarning("Existence check of {Participant} for {TransactionId} failed, left to its prepare: {Error}", p, TransactionId, ex.GetBaseException().Message);
                return (Participant: p, Exists: (bool?)null);
            }
        }).ToList();
        try
        {
            await Task.WhenAll(checks).WaitAsync(_options.PrepareTimeout, _time);
        }
        catch (TimeoutException)
        {
            _logger.LogWarning("Existence checks for {TransactionId} unanswered after {Timeout}, left to the prepares", TransactionId, _options.PrepareTimeout);
        }
        var unknown = checks.Where(c => c.IsCompletedSuccessfully && c.Result.Exists == false).Select(c => c.Result.Participant).ToList();
        if (unknown.Count == 0) return null;
        var kind = unknown.Min(p => p.Kind);
        return $"unknown {(kind == ParticipantKind.Inventory ? "SKU" : "account")} {string.Join(", ", unknown.Where(p => p.Kind == kind).Select(p => p.Key))}";
    }

    private static string RoleOf(ParticipantKind kind) => kind switch
    {
        ParticipantKind.Inventory => ServiceRoles.Inventory,
        ParticipantKind.Payment => ServiceRoles.Payment,
        ParticipantKind.Shipment => ServiceRoles.Shipping,
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown participant kind"),
    };

    private static OrderSummary Summary(OrderPlan plan) => new()
    {
        OrderId = plan.Order.OrderId,
        AccountId = plan.Order.AccountId,
        Amount = plan.TotalAmount,
        Lines = plan.MergedLines.Select(l => new OrderSummaryLine { Sku = l.Sku, Quantity = l.Quantity }).ToList(),
    };

    private static IReadOnlyList<ParticipantId> Participants(OrderPlan plan)
    {
        var list = plan.MergedLines.Select(l => new ParticipantId(ParticipantKind.Inventory, l.Sku)).ToList();
        list.Add(new ParticipantId(ParticipantKind.Payment, plan.Order.AccountId));
        list.Add(new ParticipantId(ParticipantKind.Shipment, plan.Order.OrderId));
        return list;
    }

    private Task<VoteReply> SendPrepareTo(SendPrepare send)
    {
        var plan = _plan ?? throw new InvalidOperationException("prepare without an order");
        var key = send.Participant.Key;
        return send.Participant.Kind switch
        {
            ParticipantKind.Inventory => GrainFactory.GetGrain<IInventoryGrain>(key)
                .Prepare(TransactionId, plan.MergedLines.Single(l => l.Sku == key).Quantity, send.Deadline),
            ParticipantKind.Payment => GrainFactory.GetGrain<IPaymentAccountGrain>(key).Prepare(TransactionId, plan.TotalAmount, send.Deadline),
            ParticipantKind.Shipment => GrainFactory.GetGrain<IShipmentGrain>(key)
                .Prepare(TransactionId, new ShipmentRequest(plan.Order.ShippingAddress, plan.MergedLines), send.Deadline),
            _ => throw new ArgumentOutOfRangeException(nameof(send), send.Participant.Kind, "unknown participant kind"),
        };
    }

    private static OrderOutcome ToOrderOutcome(TransactionOutcome outcome, OrderPlan plan) => new(
        plan.Order.OrderId,
        outcome.TransactionId,
        outcome.Decision == Decision.Commit ? OrderStatus.Committed : OrderStatus.Aborted,
        outcome.AbortReason,
        ToVotes(outcome),
        plan.TotalAmount);

    private static IReadOnlyList<ParticipantVote> ToVotes(TransactionOutcome outcome) => outcome.Votes
        .Select(v => new ParticipantVote(v.Participant, v.Vote?.ToString() ?? v.Source.ToString(), v.Reason))
        .ToList();
}
