using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Orleans.Core;
using Orleans.Storage;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Grains.Telemetry;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;

namespace OrleansTwoPC.Grains.Participants;

/// <summary>
/// Thin shell shared by every participant: feeds prepare/commit/rollback to the pure
/// <see cref="ParticipantMachine{TResource,TWork}"/>, makes its record durable before answering, and logs
/// every protocol event with the transaction id.
/// </summary>
/// <remarks>
/// <para><b>Group commit.</b> The concrete grains are reentrant, so requests interleave at their awaits. Each
/// request applies its step to the machine synchronously (one turn: steps never interleave, and a reservation
/// counts against availability at once), then waits for a write of the record that <i>started after</i> its
/// step. One writer loop writes the whole record, one write at a time (the ETag forbids concurrent writes):
/// every step made while a write is in flight waits for the next one, so N transactions' prepares, commits
/// and rollbacks on a hot SKU share one write instead of queueing for N. Storage is handed a deep copy taken
/// when the write starts, because the live record keeps changing while the write is in flight.</para>
/// <para><b>Durability before answering.</b> A yes vote or an acknowledgement is sent only once every change
/// made before it (its own or another request's it relied on) is durable; a no vote needs nothing durable.</para>
/// <para><b>Failed write.</b> Every waiter of the failed write and of the next batch (whose changes were made
/// on top of it) fails; the grain then reloads its record before any request touches the machine again.</para>
/// <para><b>Failed step.</b> A step that throws may have changed the record half-way. It is treated like a
/// failed write of everything not yet written: the unwritten batch fails, and the grain reloads its record
/// (once a write in flight has finished) before any request touches the machine again. So the activation
/// never shows, and no later write ever stores, a change that was not made durable.</para>
/// <para><b>Arguments.</b> Every entry point checks its arguments (<see cref="ParticipantArguments"/>, the
/// prepare deadline bound, the resource rules) before it touches any state.</para>
/// <para><b>Provisional start.</b> A participant that serves one transaction (a shipment per order) is nearly always
/// new, so it does not read its record when it starts: its first prepare runs on an empty record and is written as
/// an insert. The database refuses that insert when a record exists; the grain then reads it and takes the
/// prepare again on what is durable, before any vote is sent. Every other request reads the record first.</para>
/// <para><b>Stalls.</b> An injected hang or a reached crash point stalls the whole participant (as the
/// non-reentrant grain was stalled before), so a slow or frozen service looks the same to its callers.</para>
/// </remarks>
public abstract class ParticipantGrain<TResource, TWork> : Grain where TResource : new()
{
    private readonly IGrainStorage _storage;
    private readonly string _stateName;
    private IStorage<ParticipantRecord<TResource, TWork>> _state = null!;

    // True while the record was neither read nor written by this activation (see "Provisional start").
    private bool _provisional;
    private readonly FaultInjector _faults;
    private readonly StepFaultInjector _stepFaults;
    private readonly CrashInjector _crashes;
    private readonly TimeProvider _time;
    private ParticipantMachine<TResource, TWork> _machine = null!;

    // Group commit: the batch of changes made since the in-flight write started, and that write's batch.
    private TaskCompletionSource? _unwritten;
    // Steps that changed the record since the write in flight started: the next write carries them.
    private int _unwrittenSteps;
    private TaskCompletionSource? _writing;
    private bool _writerRunning;

    // Set by a failed write: the in-memory record may hold changes that never reached the database.
    private bool _mustReload;
    private Task? _reloading;

    // Completed unless an injected hang or a reached crash point holds the participant.
    private Task _stall = Task.CompletedTask;

    protected ParticipantGrain(
        IGrainStorage storage,
        string stateName,
        IOptions<ProtocolOptions> options,
        FaultInjector faults,
        StepFaultInjector stepFaults,
        CrashInjector crashes,
        TimeProvider time,
        ILogger logger)
    {
        _storage = storage;
        _stateName = stateName;
        Options = options.Value;
        _faults = faults;
        _stepFaults = stepFaults;
        _crashes = crashes;
        _time = time;
        Logger = logger;
    }

    protected ProtocolOptions Options { get; }
    protected ILogger Logger { get; }
    protected abstract ParticipantKind Kind { get; }

    /// <summary>A participant that serves one transaction (a shipment per order): once nothing is prepared
    /// after a decision it deactivates instead of waiting out Orleans' idle time; a late message reactivates
    /// it from its record.</summary>
    protected virtual bool ServesOneTransaction => false;
    protected abstract IResourceRules<TResource, TWork> Rules { get; }
    protected string Key => this.GetPrimaryKeyString();
    protected string ParticipantName => new ParticipantId(Kind, Key).ToString();
    protected DateTimeOffset Now => _time.GetUtcNow();

    /// <summary>Prepares refused because they came after their deadline (since activation; not durable).</summary>
    protected int LatePreparesRefused { get; private set; }

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        // Not Orleans' [PersistentState], which always reads on activation.
        _state = new StateStorageBridge<ParticipantRecord<TResource, TWork>>(_stateName, GrainContext, _storage);
        _provisional = ServesOneTransaction;
        if (!_provisional) await _state.ReadStateAsync();
        _machine = new ParticipantMachine<TResource, TWork>(Rules, _provisional ? null : _state.State, Options.DecisionRetention);
    }

    protected async Task<VoteReply> PrepareCore(string transactionId, TWork work, DateTimeOffset deadline)
    {
        if ((ParticipantArguments.CheckTransactionId(transactionId) ?? Options.CheckPrepareDeadline(deadline, Now)) is { } problem)
            return Refuse(transactionId, problem);
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
        await Unstalled();
        Logger.LogDebug("Prepare received {TransactionId} at {Participant}, deadline {Deadline:O}", transactionId, ParticipantName, deadline);
        TaskCompletionSource? hangOver = null;
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
                    // A slow service: nothing else is served here until this prepare has been handled.
                    hangOver = Stall();
                    await Task.Delay(fault.HangFor);
                    break;
            }
        }

        PrepareResult result;
        while (true)
        {
            (PrepareResult Result, Task Durable) step;
            var provisional = false;
            try
            {
                await Freeze(_crashes.Check(CrashPoint.ParticipantBeforeVote, transactionId, ParticipantName));
                step = await Step(StepKind.Prepare, () =>
                    {
                        provisional = _provisional;
                        return _machine.Prepare(transactionId, coordinator: transactionId, work, deadline, Now);
                    },
                    r => r.MustPersist ? Durability.OwnChange : r.Vote == Vote.Yes ? Durability.PriorChanges : Durability.None,
                    ignoreStall: hangOver is not null);
            }
            finally
            {
                // Released once the prepare's step is applied, so a rollback queued behind the hang comes after it.
                hangOver?.TrySetResult();
                hangOver = null;
            }

            result = step.Result;
            if (result.Case == PrepareCase.DeadlinePassed)
            {
                LatePreparesRefused++;
                Logger.LogWarning("Late prepare refused {TransactionId} at {Participant}: {Reason}", transactionId, ParticipantName, result.Reason);
            }
            try
            {
                await WhenWritten(step.Durable, transactionId, "prepared");
                break;
            }
            catch (InconsistentStateException) when (provisional)
            {
                // Taken on an empty record, but one exists: nothing was written or answered; take it again on the record.
                Logger.LogInformation("Prepare {TransactionId} at {Participant} taken again: a record exists", transactionId, ParticipantName);
            }
        }
        if (result.Vote == Vote.Yes && !_mustReload)
        {
            // Written: but a rollback may have released it meanwhile; then say no (the coordinator has aborted).
            var confirmed = _machine.ConfirmYes(transactionId, deadline);
            if (confirmed.Vote == Vote.No)
            {
                Logger.LogInformation("Yes withdrawn {TransactionId} at {Participant}: {Reason}", transactionId, ParticipantName, confirmed.Reason);
                result = confirmed;
            }
        }
        await Freeze(_crashes.Check(CrashPoint.ParticipantAfterPrepareDurable, transactionId, ParticipantName));
        Logger.LogDebug("Vote {Vote} for {TransactionId} from {Participant} ({Case}) {Reason}", result.Vote, transactionId, ParticipantName, result.Case, result.Reason);
        return new VoteReply(result.Vote == Vote.Yes, result.Reason);
    }

    /// <summary>A no vote for a prepare whose arguments break the contract; nothing is touched.</summary>
    protected VoteReply Refuse(string? transactionId, string problem)
    {
        Logger.LogWarning("Prepare refused {TransactionId} at {Participant}: invalid arguments: {Reason}", transactionId, ParticipantName, problem);
        return new VoteReply(false, $"invalid prepare: {problem}");
    }

    public async Task Commit(string transactionId, DateTimeOffset? prepareDeadline = null)
    {
        ParticipantArguments.RequireTransactionId(transactionId);
        await Unstalled();
        ThrowIfCutOff(transactionId);
        await Freeze(_crashes.Check(CrashPoint.ParticipantAfterDecisionBeforeApply, transactionId, ParticipantName));
        var (result, durable) = await Step(StepKind.Commit, () => _machine.Commit(transactionId, Now, prepareDeadline), DecisionDurability);
        await FinishDecision(transactionId, Decision.Commit, result, durable);
    }

    public async Task Rollback(string transactionId)
    {
        ParticipantArguments.RequireTransactionId(transactionId);
        await Unstalled();
        ThrowIfCutOff(transactionId);
        await Freeze(_crashes.Check(CrashPoint.ParticipantAfterDecisionBeforeApply, transactionId, ParticipantName));
        var (result, durable) = await Step(StepKind.Rollback, () => _machine.Rollback(transactionId, Now), DecisionDurability);
        await FinishDecision(transactionId, Decision.Abort, result, durable);
    }

    /// <summary>
    /// Participant recovery: for every transaction prepared here longer than <paramref name="olderThan"/>,
    /// ask its coordinator how it ended (unknown means abort) and apply the answer. A prepared participant
    /// never decides alone.
    /// </summary>
    public async Task<int> ResolveInDoubt(TimeSpan olderThan)
    {
        if (olderThan < TimeSpan.Zero) throw new ArgumentOutOfRangeException(nameof(olderThan), olderThan, "an age cannot be negative");
        try
        {
            return await ResolveInDoubtCore(olderThan);
        }
        finally
        {
            // A sweep that listed this participant while it was prepared may ask after it finished (and left memory).
            DeactivateIfDone();
        }
    }

    private async Task<int> ResolveInDoubtCore(TimeSpan olderThan)
    {
        var (inDoubt, _) = await Step(StepKind.Read, () => _machine.InDoubt(Now, olderThan), _ => Durability.None);
        if (inDoubt.Count == 0) return 0;
        var asks = inDoubt.Select(async t =>
        {
            Logger.LogInformation("In doubt {TransactionId} at {Participant}: asking coordinator {Coordinator}", t.TransactionId, ParticipantName, t.Coordinator);
            try
            {
                // A partition cuts both ways: the participant cannot reach the coordinator either.
                ThrowIfCutOff(t.TransactionId);
                return (t.TransactionId, Reply: await GrainFactory.GetGrain<ITransactionCoordinatorGrain>(t.Coordinator).QueryOutcome(), Error: (Exception?)null);
            }
            catch (Exception ex)
            {
                return (t.TransactionId, Reply: (InquiryReply?)null, Error: ex);
            }
        }).ToList();
        var answers = new List<(string TransactionId, Decision Decision, DateTimeOffset? Deadline)>();
        foreach (var (transactionId, reply, error) in await Task.WhenAll(asks))
        {
            if (reply is null || reply.Decision == InquiryReply.Pending)
            {
                Logger.LogWarning("In doubt {TransactionId} at {Participant}: still undecided ({Reason})", transactionId, ParticipantName, error?.GetBaseException().Message ?? "coordinator pending");
                continue;
            }
            answers.Add((transactionId, reply.Decision == InquiryReply.Commit ? Decision.Commit : Decision.Abort, reply.PrepareDeadline));
        }
        if (answers.Count == 0) return 0;

        // Other requests ran while the coordinators were asked: apply every answer to the machine as it is now, in one turn.
        var (results, durable) = await Step(StepKind.Resolve,
            () => answers.Select(a => (a.TransactionId, a.Decision, Result: _machine.Resolve(a.TransactionId, a.Decision, a.Deadline, Now))).ToList(),
            applied => applied.Any(a => a.Result.MustPersist) ? Durability.OwnChange : Durability.PriorChanges);
        foreach (var (transactionId, decision, result) in results)
            Logger.LogInformation("Recovered decision {Decision} for {TransactionId} at {Participant} ({Case})", decision, transactionId, ParticipantName, result.Case);
        await WhenWritten(durable, results[0].TransactionId, "recovered decisions");
        var conflict = results.FirstOrDefault(r => r.Result.Case == DecisionCase.Conflict);
        if (conflict.TransactionId is not null) ThrowViolation(conflict.TransactionId, conflict.Decision);
        return results.Count;
    }

    public Task<string> GetTransactionStatus(string transactionId)
    {
        ParticipantArguments.RequireTransactionId(transactionId);
        return Read(machine => machine.StatusOf(transactionId).ToString());
    }

    /// <summary>A grain of one transaction (a shipment) with nothing prepared has nothing left to do: it leaves memory.</summary>
    private void DeactivateIfDone()
    {
        if (ServesOneTransaction && !_mustReload && _machine.Record.Prepared.Count == 0) DeactivateOnIdle();
    }

    /// <summary>
    /// Reads the machine once nothing holds the participant and returns the value as soon as what it shows
    /// is durable (a read never reports a change that a failed write may still undo). When that write
    /// fails, the grain reloads and the read is taken again from what is durable.
    /// </summary>
    protected async Task<T> Read<T>(Func<ParticipantMachine<TResource, TWork>, T> read)
    {
        for (var attempt = 1; ; attempt++)
        {
            var (value, durable) = await Step(StepKind.Read, () => read(_machine), _ => Durability.PriorChanges);
            try
            {
                await durable;
                return value;
            }
            catch when (attempt == 1)
            {
                // The next step reloads the record first.
            }
        }
    }

    /// <summary>
    /// Admin changes (seeding) take the same path as the protocol: applied in one step, then durable with
    /// the next write. <paramref name="change"/> refuses by returning the reason, before it changes anything
    /// (thrown as <see cref="InvalidOperationException"/>); a failed write undoes it (the grain reloads).
    /// </summary>
    protected async Task ChangeAdministratively(Func<ParticipantMachine<TResource, TWork>, string?> change, string what)
    {
        var (refusal, durable) = await Step(StepKind.Admin, () => change(_machine), r => r is null ? Durability.OwnChange : Durability.None);
        if (refusal is not null) throw new InvalidOperationException($"{ParticipantName}: {refusal}");
        await WhenWritten(durable, transactionId: "(admin)", what);
        Logger.LogInformation("{Participant} admin change: {Change}", ParticipantName, what);
    }

    /// <summary>Fault seam for partitions: the decision does not get through while the rule holds.</summary>
    private void ThrowIfCutOff(string transactionId)
    {
        if (_faults.For(ParticipantName, transactionId) is { Fault: ParticipantFault.Unreachable })
            throw new InjectedFaultException($"injected fault: {ParticipantName} unreachable for {transactionId}");
    }

    private static Durability DecisionDurability(DecisionResult result) =>
        result.MustPersist ? Durability.OwnChange : result.Acknowledge ? Durability.PriorChanges : Durability.None;

    private async Task FinishDecision(string transactionId, Decision decision, DecisionResult result, Task durable)
    {
        if (result.Case == DecisionCase.Conflict) ThrowViolation(transactionId, decision);
        await WhenWritten(durable, transactionId, decision == Decision.Commit ? "committed" : "rolled back");
        Logger.LogDebug("{Decision} acknowledged {TransactionId} by {Participant} ({Case})", decision, transactionId, ParticipantName, result.Case);
        DeactivateIfDone();
    }

    private void ThrowViolation(string transactionId, Decision decision)
    {
        Logger.LogCritical("Protocol violation {TransactionId} at {Participant}: told {Decision} after applying the opposite", transactionId, ParticipantName, decision);
        throw new ProtocolViolationException($"{ParticipantName} was told {decision} for {transactionId} after applying the opposite decision");
    }

    private async Task WhenWritten(Task durable, string transactionId, string what)
    {
        try
        {
            await durable;
        }
        catch (Exception ex)
        {
            Logger.LogWarning("Durable write failed {TransactionId} at {Participant} ({What}): {Error}", transactionId, ParticipantName, what, ex.GetBaseException().Message);
            throw;
        }
    }

    // ---------------------------------------------------------------- group commit

    /// <summary>What a step's answer waits for before it is sent.</summary>
    private enum Durability
    {
        /// <summary>Nothing (a no vote: refusing is always safe).</summary>
        None,
        /// <summary>Every change made before the step (a yes or an acknowledgement that relies on them).</summary>
        PriorChanges,
        /// <summary>The step changed the record: the write that starts after it.</summary>
        OwnChange,
    }

    /// <summary>
    /// Runs <paramref name="step"/> on the machine once nothing holds the participant and the record is
    /// loaded, and, in the same turn, joins the write its answer must wait for. Everything from the last
    /// check to the join is synchronous, so no other request, failed write or reload can come in between.
    /// A step that throws discards every unwritten change (see <see cref="DiscardUnwritten"/>) and rethrows.
    /// </summary>
    private async Task<(T Result, Task Durable)> Step<T>(StepKind kind, Func<T> step, Func<T, Durability> durability, bool ignoreStall = false)
    {
        while (true)
        {
            if (!ignoreStall && !_stall.IsCompleted) await _stall;
            else if (_unwrittenSteps >= Options.MaxStepsPerWrite && _unwritten is not null) await NextWriteStarted();
            else if (_mustReload) await Reload();
            else if (_provisional && kind != StepKind.Prepare) await LeaveProvisional();
            else break;
        }
        T result;
        try
        {
            result = step();
            _stepFaults.AfterStep(ParticipantName, kind);
        }
        catch (Exception ex)
        {
            DiscardUnwritten(kind, ex);
            throw;
        }
        var durable = durability(result) switch
        {
            Durability.OwnChange => JoinNextWrite(),
            Durability.PriorChanges => WhenPriorChangesDurable(),
            _ => Task.CompletedTask,
        };
        return (result, durable);
    }

    /// <summary>
    /// A step threw, perhaps half-way through changing the record: the in-memory record can no longer be
    /// trusted. Every change not yet handed to a write is given up (its waiters fail, none has answered yet),
    /// and the next step reloads the record from storage, after the write in flight (whose changes were all
    /// made before this step) has finished.
    /// </summary>
    private void DiscardUnwritten(StepKind kind, Exception failure)
    {
        Logger.LogError(failure, "{Kind} step failed at {Participant}; changes not yet written are discarded and the record will be reloaded", kind, ParticipantName);
        _mustReload = true;
        if (TakeUnwritten() is { } batch)
        {
            batch.SetException(new InvalidOperationException($"{ParticipantName}: a change this answer relied on was discarded (a {kind} step failed: {failure.Message}); nothing was made durable"));
        }
    }

    /// <summary>
    /// Before anything but a prepare runs on a record that was never read: a write in flight or pending settles
    /// the question (written: the insert proved no record existed; failed: the grain reloads); with none, read.
    /// </summary>
    private async Task LeaveProvisional()
    {
        var pending = WhenPriorChangesDurable();
        if (pending.IsCompleted)
        {
            _mustReload = true;
            return;
        }
        try
        {
            await pending;
        }
        catch
        {
            // The failed write set _mustReload; its own waiters hear of the failure.
        }
    }

    /// <summary>
    /// The next write is full (<see cref="ProtocolOptions.MaxStepsPerWrite"/>): completes once the write in flight is
    /// done, succeeded or not, which is when the writer takes the full one and the step can join the write after it.
    /// A failure reaches that write's own waiters, not this step.
    /// </summary>
    private async Task NextWriteStarted()
    {
        if (_writing is not { } inFlight)
        {
            // The writer has not started yet (it lets queued requests step first): it is queued before this step.
            await Task.Yield();
            return;
        }
        try
        {
            await inFlight.Task;
        }
        catch
        {
            // Its waiters hear of the failure; the writer set _mustReload.
        }
    }

    /// <summary>Completes when every change made so far is durable (at once when nothing is unwritten).</summary>
    private Task WhenPriorChangesDurable() => _unwritten?.Task ?? _writing?.Task ?? Task.CompletedTask;

    /// <summary>The changes not yet handed to a write (null when there are none), taken so that the next step starts a new batch.</summary>
    private TaskCompletionSource? TakeUnwritten()
    {
        var batch = _unwritten;
        _unwritten = null;
        _unwrittenSteps = 0;
        return batch;
    }

    /// <summary>The caller just changed the record: it waits for the next write, started now if none is in flight.</summary>
    private Task JoinNextWrite()
    {
        var batch = _unwritten ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _unwrittenSteps++;
        if (!_writerRunning) _ = WriteLoop();
        return batch.Task;
    }

    /// <summary>
    /// The single writer: writes the record while changes are unwritten, one write at a time. Each write
    /// completes exactly the steps made before it started; steps made during it wait for the next.
    /// </summary>
    private async Task WriteLoop()
    {
        _writerRunning = true;
        try
        {
            // Let the requests already queued on this activation take their steps first: they join this write.
            await Task.Yield();
            while (TakeUnwritten() is { } batch)
            {
                _writing = batch;
                // Storage serializes the state after its own awaits: hand it a copy the machine will not touch.
                _state.State = _machine.CopyRecord();
                Exception? failure = null;
                try
                {
                    await _state.WriteStateAsync();
                }
                catch (Exception ex)
                {
                    failure = ex;
                }
                _writing = null;
                if (failure is null)
                {
                    // The first write of a provisional record was an insert: no other record exists.
                    _provisional = false;
                    batch.SetResult();
                    continue;
                }

                Logger.LogError(failure, "Durable write failed at {Participant}; every waiting transaction fails and the record will be reloaded", ParticipantName);
                _mustReload = true;
                batch.SetException(failure);
                // Made on top of the failed write's changes: lost with them when the grain reloads.
                TakeUnwritten()?.SetException(failure);
                return;
            }
        }
        finally
        {
            _writerRunning = false;
        }
    }

    /// <summary>One reload for every request waiting on it; the machine is replaced in one step once the read is done.</summary>
    private Task Reload()
    {
        if (_reloading is not null) return _reloading;
        var reloading = ReloadRecord();
        if (!reloading.IsCompleted) _reloading = reloading;
        return reloading;
    }

    private async Task ReloadRecord()
    {
        try
        {
            // After a failed step a write may still be in flight: read what it leaves behind. After a failed
            // write the writer has stopped. Either way no step runs, so nothing starts a write, until the reload is done.
            if (_writing is { } inFlight)
            {
                try
                {
                    await inFlight.Task;
                }
                catch
                {
                    // Its waiters hear of the failure; the reload reads whatever it left.
                }
            }
            await _state.ReadStateAsync();
            _machine = new ParticipantMachine<TResource, TWork>(Rules, _state.State, Options.DecisionRetention);
            _mustReload = false;
            var wasProvisional = _provisional;
            _provisional = false;
            if (wasProvisional) Logger.LogDebug("{Participant} read its record", ParticipantName);
            else Logger.LogInformation("{Participant} reloaded its record after a failed write", ParticipantName);
        }
        finally
        {
            _reloading = null;
        }
    }

    // ---------------------------------------------------------------- stalls (fault and crash seams)

    /// <summary>Waits while an injected hang or a reached crash point holds the participant.</summary>
    private async Task Unstalled()
    {
        while (!_stall.IsCompleted) await _stall;
    }

    /// <summary>Holds every other request until the returned source is completed.</summary>
    private TaskCompletionSource Stall()
    {
        var over = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        AddStall(over.Task);
        return over;
    }

    /// <summary>A reached crash point never returns: the whole participant freezes there until its silo is killed.</summary>
    private Task Freeze(Task crashCheck)
    {
        if (!crashCheck.IsCompleted) AddStall(crashCheck);
        return crashCheck;
    }

    private void AddStall(Task until) => _stall = _stall.IsCompleted ? until : Task.WhenAll(_stall, until);
}
