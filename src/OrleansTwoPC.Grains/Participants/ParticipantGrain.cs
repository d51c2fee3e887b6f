using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Grains.Telemetry;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;

namespace OrleansTwoPC.Grains.Participants;

/// <summary>
/// Thin shell shared by every participant: feeds prepare/commit/rollback to the pure
/// <see cref="ParticipantMachine{TResource,TWork}"/>, persists its record before answering whenever the
/// machine says so, and logs every protocol event with the transaction id. The grain's single-threaded
/// activation serialises all changes to the resource.
/// </summary>
public abstract class ParticipantGrain<TResource, TWork> : Grain where TResource : new()
{
    private readonly IPersistentState<ParticipantRecord<TResource, TWork>> _state;
    private readonly FaultInjector _faults;
    private readonly CrashInjector _crashes;
    private readonly TimeProvider _time;
    private ParticipantMachine<TResource, TWork> _machine = null!;
    private bool _mustReload;

    protected ParticipantGrain(
        IPersistentState<ParticipantRecord<TResource, TWork>> state,
        IOptions<ProtocolOptions> options,
        FaultInjector faults,
        CrashInjector crashes,
        TimeProvider time,
        ILogger logger)
    {
        _state = state;
        Options = options.Value;
        _faults = faults;
        _crashes = crashes;
        _time = time;
        Logger = logger;
    }

    protected ProtocolOptions Options { get; }
    protected ILogger Logger { get; }
    protected abstract ParticipantKind Kind { get; }
    protected abstract IResourceRules<TResource, TWork> Rules { get; }
    protected ParticipantMachine<TResource, TWork> Machine => _machine;
    protected string Key => this.GetPrimaryKeyString();
    protected string ParticipantName => new ParticipantId(Kind, Key).ToString();
    protected DateTimeOffset Now => _time.GetUtcNow();

    /// <summary>Prepares refused because they came after their deadline (since activation; not durable).</summary>
    protected int LatePreparesRefused { get; private set; }

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _machine = new ParticipantMachine<TResource, TWork>(Rules, _state.State, Options.DecisionRetention);
        return Task.CompletedTask;
    }

    protected async Task<VoteReply> PrepareCore(string transactionId, TWork work, DateTimeOffset deadline)
    {
        // With Orleans activity propagation this is a child of the coordinator's "twopc.prepare" span.
        using var activity = TwoPcTelemetry.ActivitySource.StartActivity(TwoPcTelemetry.ParticipantPrepareActivity, ActivityKind.Internal);
        activity?.SetTag(TwoPcTelemetry.TransactionTag, transactionId);
        activity?.SetTag(TwoPcTelemetry.ParticipantTag, ParticipantName);
        var reply = await PrepareVote(transactionId, work, deadline);
        activity?.SetTag("twopc.vote", reply.Yes ? "yes" : "no");
        return reply;
    }

    private async Task<VoteReply> PrepareVote(string transactionId, TWork work, DateTimeOffset deadline)
    {
        await EnsureLoaded();
        Logger.LogDebug("Prepare received {TransactionId} at {Participant}, deadline {Deadline:O}", transactionId, ParticipantName, deadline);
        if (_faults.For(ParticipantName, transactionId) is { Fault: not ParticipantFault.Unreachable } fault)
        {
            Logger.LogWarning("Injected fault {Fault} for {TransactionId} at {Participant}", fault.Fault, transactionId, ParticipantName);
            switch (fault.Fault)
            {
                case ParticipantFault.VoteNo:
                    return new VoteReply(false, "injected fault: vote no");
                case ParticipantFault.Throw:
                    throw new InjectedFaultException($"injected fault: {ParticipantName} failed to prepare {transactionId}");
                case ParticipantFault.Hang:
                    await Task.Delay(fault.HangFor);
                    break;
            }
        }

        await _crashes.Check(CrashPoint.ParticipantBeforeVote, transactionId, ParticipantName);
        var result = _machine.Prepare(transactionId, coordinator: transactionId, work, deadline, Now);
        if (result.Case == PrepareCase.DeadlinePassed)
        {
            LatePreparesRefused++;
            Logger.LogWarning("Late prepare refused {TransactionId} at {Participant}: {Reason}", transactionId, ParticipantName, result.Reason);
        }
        if (result.MustPersist) await Persist(transactionId, "prepared");
        await _crashes.Check(CrashPoint.ParticipantAfterPrepareDurable, transactionId, ParticipantName);
        Logger.LogDebug("Vote {Vote} for {TransactionId} from {Participant} ({Case}) {Reason}", result.Vote, transactionId, ParticipantName, result.Case, result.Reason);
        return new VoteReply(result.Vote == Vote.Yes, result.Reason);
    }

    public async Task Commit(string transactionId, DateTimeOffset? prepareDeadline = null)
    {
        await EnsureLoaded();
        ThrowIfCutOff(transactionId);
        await _crashes.Check(CrashPoint.ParticipantAfterDecisionBeforeApply, transactionId, ParticipantName);
        var result = _machine.Commit(transactionId, Now, prepareDeadline);
        await FinishDecision(transactionId, Decision.Commit, result);
    }

    public async Task Rollback(string transactionId)
    {
        await EnsureLoaded();
        ThrowIfCutOff(transactionId);
        await _crashes.Check(CrashPoint.ParticipantAfterDecisionBeforeApply, transactionId, ParticipantName);
        var result = _machine.Rollback(transactionId, Now);
        await FinishDecision(transactionId, Decision.Abort, result);
    }

    /// <summary>
    /// Participant recovery: for every transaction prepared here longer than <paramref name="olderThan"/>,
    /// ask its coordinator how it ended (unknown means abort) and apply the answer. A prepared participant
    /// never decides alone.
    /// </summary>
    public async Task<int> ResolveInDoubt(TimeSpan olderThan)
    {
        await EnsureLoaded();
        var inDoubt = _machine.InDoubt(Now, olderThan);
        if (inDoubt.Count == 0) return 0;
        var asks = inDoubt.Select(async t =>
        {
            Logger.LogInformation("In doubt {TransactionId} at {Participant}: asking coordinator {Coordinator}", t.TransactionId, ParticipantName, t.Coordinator);
            try
            {
                return (t.TransactionId, Reply: await GrainFactory.GetGrain<ITransactionCoordinatorGrain>(t.Coordinator).QueryOutcome(), Error: (Exception?)null);
            }
            catch (Exception ex)
            {
                return (t.TransactionId, Reply: (InquiryReply?)null, Error: ex);
            }
        }).ToList();
        var settled = 0;
        foreach (var (transactionId, reply, error) in await Task.WhenAll(asks))
        {
            if (reply is null || reply.Decision == InquiryReply.Pending)
            {
                Logger.LogWarning("In doubt {TransactionId} at {Participant}: still undecided ({Reason})", transactionId, ParticipantName, error?.GetBaseException().Message ?? "coordinator pending");
                continue;
            }
            var decision = reply.Decision == InquiryReply.Commit ? Decision.Commit : Decision.Abort;
            var result = _machine.Resolve(transactionId, decision, reply.PrepareDeadline, Now);
            Logger.LogInformation("Recovered decision {Decision} for {TransactionId} at {Participant} ({Case})", decision, transactionId, ParticipantName, result.Case);
            await FinishDecision(transactionId, decision, result);
            settled++;
        }
        return settled;
    }

    public async Task<string> GetTransactionStatus(string transactionId)
    {
        await EnsureLoaded();
        return _machine.StatusOf(transactionId).ToString();
    }

    /// <summary>Fault seam for partitions: the decision does not get through while the rule holds.</summary>
    private void ThrowIfCutOff(string transactionId)
    {
        if (_faults.For(ParticipantName, transactionId) is { Fault: ParticipantFault.Unreachable })
            throw new InjectedFaultException($"injected fault: {ParticipantName} unreachable for {transactionId}");
    }

    private async Task FinishDecision(string transactionId, Decision decision, DecisionResult result)
    {
        if (result.Case == DecisionCase.Conflict)
        {
            Logger.LogCritical("Protocol violation {TransactionId} at {Participant}: told {Decision} after applying the opposite", transactionId, ParticipantName, decision);
            throw new ProtocolViolationException($"{ParticipantName} was told {decision} for {transactionId} after applying the opposite decision");
        }
        if (result.MustPersist) await Persist(transactionId, decision == Decision.Commit ? "committed" : "rolled back");
        Logger.LogDebug("{Decision} acknowledged {TransactionId} by {Participant} ({Case})", decision, transactionId, ParticipantName, result.Case);
    }

    /// <summary>Admin changes (seeding) go through the same durable write.</summary>
    protected async Task PersistAdmin(string what)
    {
        try
        {
            await _state.WriteStateAsync();
            Logger.LogInformation("{Participant} admin change: {Change}", ParticipantName, what);
        }
        catch
        {
            InvalidateAfterFailedWrite();
            throw;
        }
    }

    protected async Task EnsureLoaded()
    {
        if (!_mustReload) return;
        // A write failed earlier: the in-memory record may hold changes that never reached the database.
        await _state.ReadStateAsync();
        _machine = new ParticipantMachine<TResource, TWork>(Rules, _state.State, Options.DecisionRetention);
        _mustReload = false;
        Logger.LogInformation("{Participant} reloaded its record after a failed write", ParticipantName);
    }

    private async Task Persist(string transactionId, string what)
    {
        try
        {
            await _state.WriteStateAsync();
        }
        catch (Exception ex)
        {
            Logger.LogError(ex, "Durable write failed {TransactionId} at {Participant} ({What}); the record will be reloaded", transactionId, ParticipantName, what);
            InvalidateAfterFailedWrite();
            throw;
        }
    }

    private void InvalidateAfterFailedWrite()
    {
        _mustReload = true;
    }
}
