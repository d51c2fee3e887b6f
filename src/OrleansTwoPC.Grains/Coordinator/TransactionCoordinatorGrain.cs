using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;

namespace OrleansTwoPC.Grains.Coordinator;

/// <summary>
/// Coordinator of one transaction (key = transaction id, derived from the order id). A thin shell around
/// <see cref="CoordinatorMachine"/>: it validates the order, sends what the machine says to send, persists
/// the decision with a versioned write before anybody hears it, answers the caller, and delivers the
/// decision in the background until every participant acknowledged.
/// </summary>
public sealed class TransactionCoordinatorGrain : Grain, ITransactionCoordinatorGrain
{
    private readonly IPersistentState<CoordinatorRecord> _state;
    private readonly ProtocolOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger<TransactionCoordinatorGrain> _logger;
    private CoordinatorMachine _machine = null!;
    private OrderPlan? _plan;

    public TransactionCoordinatorGrain(
        [PersistentState("coordinator-tx", StorageNames.Coordinator)] IPersistentState<CoordinatorRecord> state,
        IOptions<ProtocolOptions> options,
        TimeProvider time,
        ILogger<TransactionCoordinatorGrain> logger)
    {
        _state = state;
        _options = options.Value;
        _time = time;
        _logger = logger;
    }

    private string TransactionId => this.GetPrimaryKeyString();
    private DateTimeOffset Now => _time.GetUtcNow();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _machine = new CoordinatorMachine(TransactionId, _options, _state.RecordExists ? _state.State : null);
        if (_machine.Phase is CoordinatorPhase.Decided or CoordinatorPhase.Completing)
        {
            _logger.LogInformation("Recovery {TransactionId}: activated with durable decision {Decision}, resuming phase two", TransactionId, _machine.Record.Decision);
            Execute(_machine.Resume(Now));
        }
        return Task.CompletedTask;
    }

    public async Task<OrderOutcome> PlaceOrder(OrderRequest order)
    {
        OrderPlan plan;
        try
        {
            plan = OrderPlan.Create(order);
        }
        catch (OrderValidationException ex)
        {
            _logger.LogWarning("Order rejected {TransactionId}: {Reason}", TransactionId, ex.Message);
            return OrderOutcome.Rejected(order?.OrderId ?? "", ex.Message);
        }
        if (plan.TransactionId != TransactionId)
            return OrderOutcome.Rejected(order.OrderId, $"order {order.OrderId} belongs to coordinator {plan.TransactionId}, not {TransactionId}");

        if (_machine.Phase == CoordinatorPhase.InDoubt) await ReloadAfterFailedDecisionWrite();
        if (_machine.Phase != CoordinatorPhase.Idle) return Resubmitted(plan);

        var unknown = await FindUnknownResources(plan);
        if (unknown is not null)
        {
            _logger.LogWarning("Order rejected {TransactionId}: {Reason}", TransactionId, unknown);
            return OrderOutcome.Rejected(order.OrderId, unknown);
        }

        _plan = plan;
        var participants = Participants(plan);
        _logger.LogInformation("Begin {TransactionId}: {ParticipantCount} participants, amount {Amount}", TransactionId, participants.Count, plan.TotalAmount);
        var actions = _machine.Begin(plan.Fingerprint, participants, Now);
        actions = await CollectVotes(actions);

        var decision = actions.OfType<PersistDecision>().Single().Decision;
        try
        {
            _state.State = _machine.Record;
            await _state.WriteStateAsync();
        }
        catch (Exception ex)
        {
            _machine.OnDecisionPersistFailed();
            _logger.LogError(ex, "Decision write failed {TransactionId} ({Decision}); outcome in doubt until recovery", TransactionId, decision);
            return new OrderOutcome(order.OrderId, TransactionId, OrderStatus.InDoubt,
                $"the {decision} decision could not be made durable ({ex.GetType().Name}: {ex.Message}); recovery will finish the transaction",
                ToVotes(_machine.Outcome()), plan.TotalAmount);
        }
        _logger.LogInformation("Decision {Decision} written {TransactionId} {AbortReason}", decision, TransactionId, _machine.Record.AbortReason);

        var afterDecision = _machine.OnDecisionPersisted();
        var reply = afterDecision.OfType<ReplyToClient>().Single();
        Execute(afterDecision);
        return ToOrderOutcome(reply.Outcome, plan);
    }

    public Task<TransactionReport> GetReport()
    {
        var record = _machine.Record;
        var known = _machine.Phase != CoordinatorPhase.Idle;
        return Task.FromResult(new TransactionReport(
            TransactionId,
            _machine.Phase.ToString(),
            known ? record.Decision.ToString() : "Unknown (presumed abort)",
            record.AbortReason,
            ToVotes(_machine.Outcome()),
            record.Participants.Where(p => !p.Acknowledged).Select(p => p.Participant).ToList(),
            known ? record.StartedAt : null,
            record.DecidedAt,
            record.CompletedAt));
    }

    /// <summary>Phase one: wait for every vote, the first no or failure, or the deadline, whichever comes first.</summary>
    private async Task<IReadOnlyList<CoordinatorAction>> CollectVotes(IReadOnlyList<CoordinatorAction> actions)
    {
        var inFlight = new Dictionary<Task<VoteReply>, ParticipantId>();
        var timer = Task.CompletedTask;
        foreach (var action in actions)
        {
            switch (action)
            {
                case SendPrepare send:
                    _logger.LogDebug("Prepare sent {TransactionId} to {Participant}", TransactionId, send.Participant);
                    inFlight[SendPrepareTo(send)] = send.Participant;
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
                    next = _machine.OnVote(participant, reply.Yes ? Vote.Yes : Vote.No, reply.Reason, Now);
                }
                else
                {
                    var error = vote.Exception?.GetBaseException();
                    _logger.LogWarning(error, "Prepare failed {TransactionId} at {Participant}", TransactionId, participant);
                    next = _machine.OnPrepareFailed(participant, $"{error?.GetType().Name}: {error?.Message}", Now);
                }
            }
            if (next.OfType<PersistDecision>().Any())
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
        foreach (var action in actions)
        {
            switch (action)
            {
                case SendDecision send:
                    _ = DeliverDecision(send);
                    break;
                case PersistCompletion:
                    _ = WriteCompletion();
                    break;
            }
        }
    }

    private async Task DeliverDecision(SendDecision send)
    {
        while (true)
        {
            if (send.Delay > TimeSpan.Zero) await Task.Delay(send.Delay, _time);
            IReadOnlyList<CoordinatorAction> next;
            try
            {
                var participant = ParticipantGrain(send.Participant);
                _logger.LogDebug("{Decision} sent {TransactionId} to {Participant} (attempt {Attempt})", send.Decision, TransactionId, send.Participant, send.Attempt);
                if (send.Decision == Decision.Commit) await participant.Commit(TransactionId);
                else await participant.Rollback(TransactionId);
                _logger.LogDebug("{Decision} acknowledged {TransactionId} by {Participant}", send.Decision, TransactionId, send.Participant);
                next = _machine.OnDecisionAcknowledged(send.Participant, Now);
            }
            catch (Exception ex)
            {
                next = _machine.OnDecisionDeliveryFailed(send.Participant, send.Attempt);
                var retry = next.OfType<SendDecision>().FirstOrDefault();
                _logger.LogWarning("{Decision} delivery failed {TransactionId} to {Participant} (attempt {Attempt}), retry in {RetryDelay}: {Error}",
                    send.Decision, TransactionId, send.Participant, send.Attempt, retry?.Delay, ex.GetBaseException().Message);
            }
            var again = next.OfType<SendDecision>().FirstOrDefault();
            if (again is null)
            {
                Execute(next);
                return;
            }
            send = again;
        }
    }

    private async Task WriteCompletion()
    {
        try
        {
            _state.State = _machine.Record;
            await _state.WriteStateAsync();
            _machine.OnCompletionPersisted();
            _logger.LogInformation("Completed {TransactionId}: every participant acknowledged {Decision}", TransactionId, _machine.Record.Decision);
        }
        catch (Exception ex)
        {
            _machine.OnCompletionPersistFailed();
            _logger.LogWarning(ex, "Completion write failed {TransactionId}; the decision stays durable and recovery will finish", TransactionId);
        }
    }

    private async Task ReloadAfterFailedDecisionWrite()
    {
        await _state.ReadStateAsync();
        _machine = new CoordinatorMachine(TransactionId, _options, _state.RecordExists ? _state.State : null);
        _logger.LogInformation("Recovery {TransactionId}: reloaded after a failed decision write, phase {Phase}", TransactionId, _machine.Phase);
        Execute(_machine.Resume(Now));
    }

    private OrderOutcome Resubmitted(OrderPlan plan)
    {
        var record = _machine.Record;
        if (record.PresumedAbort)
            return new OrderOutcome(plan.Order.OrderId, TransactionId, OrderStatus.Aborted, record.AbortReason, Array.Empty<ParticipantVote>(), plan.TotalAmount);
        if (record.Fingerprint != plan.Fingerprint)
        {
            _logger.LogWarning("Order rejected {TransactionId}: resubmitted with different content", TransactionId);
            return OrderOutcome.Rejected(plan.Order.OrderId, $"order id {plan.Order.OrderId} was already used for an order with different content");
        }
        _logger.LogInformation("Resubmission {TransactionId}: returning the recorded outcome {Decision}", TransactionId, record.Decision);
        return ToOrderOutcome(_machine.Outcome(), plan);
    }

    private async Task<string?> FindUnknownResources(OrderPlan plan)
    {
        var skus = plan.MergedLines.Select(l => (l.Sku, Task: GrainFactory.GetGrain<IInventoryGrain>(l.Sku).GetSnapshot())).ToList();
        var account = GrainFactory.GetGrain<IPaymentAccountGrain>(plan.Order.AccountId).GetSnapshot();
        await Task.WhenAll(skus.Select(s => (Task)s.Task).Append(account));
        var missing = skus.Where(s => !s.Task.Result.Exists).Select(s => s.Sku).ToList();
        if (missing.Count > 0) return $"unknown SKU {string.Join(", ", missing)}";
        return account.Result.Exists ? null : $"unknown account {plan.Order.AccountId}";
    }

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

    private ITransactionParticipantGrain ParticipantGrain(ParticipantId participant) => participant.Kind switch
    {
        ParticipantKind.Inventory => GrainFactory.GetGrain<IInventoryGrain>(participant.Key),
        ParticipantKind.Payment => GrainFactory.GetGrain<IPaymentAccountGrain>(participant.Key),
        ParticipantKind.Shipment => GrainFactory.GetGrain<IShipmentGrain>(participant.Key),
        _ => throw new ArgumentOutOfRangeException(nameof(participant), participant.Kind, "unknown participant kind"),
    };

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
