using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OrleansTwoPC.Grains.Placement;

namespace OrleansTwoPC.Grains.Recovery;

/// <summary>
/// Runs the recovery sweep when the cluster declares a silo dead, and once when a coordinator silo starts,
/// instead of leaving a dead silo's transactions to the periodic reminder (up to a sweep interval plus the
/// in-doubt timeout, about 90 s with the defaults).
/// </summary>
/// <remarks>
/// The sweep asks every prepared participant at once, whatever its age: a coordinator that is alive answers
/// with its decision (or after it has decided: it is non-reentrant), one that died with the silo is
/// re-activated and answers from its record, or presumes abort without one. A second sweep follows after
/// <see cref="RecoveryOptions.CoordinatorGrace"/> for what the first could not settle yet (a participant
/// whose silo died is re-activated by its coordinator's phase-two retries meanwhile).
/// Of the active coordinator silos, the one with the lowest address sweeps, so a death costs one sweep, not
/// one per silo; a silo whose roles are not known yet counts as a coordinator silo (two sweeps are harmless).
/// </remarks>
public sealed class SiloDeathRecovery(
    IClusterMembershipService membership,
    ILocalSiloDetails localSilo,
    LocalSiloRoles localRoles,
    SiloRoleLookup siloRoles,
    IGrainFactory grains,
    IOptions<RecoveryOptions> options,
    ILogger<SiloDeathRecovery> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly TaskCompletionSource _startSweeps = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task _watching = Task.CompletedTask;

    /// <summary>
    /// Completes when the sweeps this silo runs at its start (the first and its follow-up) are over, at once on a
    /// silo without the coordinator role. Until then a transaction prepared without a live coordinator may be
    /// presumed aborted at any moment, whatever its age.
    /// </summary>
    public Task StartSweepsCompleted => _startSweeps.Task;

    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(SiloDeathRecovery), ServiceLifecycleStage.Active, Start, Stop);

    private Task Start(CancellationToken cancellationToken)
    {
        if (!ServiceRoles.Hosts(localRoles.Roles, ServiceRoles.Coordinator))
        {
            _startSweeps.TrySetResult();
            return Task.CompletedTask;
        }
        _watching = Task.Run(() => Watch(_stopping.Token), CancellationToken.None);
        return Task.CompletedTask;
    }

    private async Task Stop(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        try
        {
            await _watching.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task Watch(CancellationToken stopping)
    {
        var known = membership.CurrentSnapshot.Members.ToDictionary(m => m.Key, m => m.Value.Status);
        // This silo may be the replacement of one that died (or the only silo, restarted after a crash).
        _ = SweepTwice("coordinator silo started", stopping).ContinueWith(_ => _startSweeps.TrySetResult(), TaskScheduler.Default);
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stopping))
            {
                var newlyDead = snapshot.Members.Values
                    .Where(m => m.Status == SiloStatus.Dead && (!known.TryGetValue(m.SiloAddress, out var before) || before != SiloStatus.Dead))
                    .Select(m => m.SiloAddress)
                    .ToList();
                foreach (var (silo, member) in snapshot.Members) known[silo] = member.Status;
                if (newlyDead.Count == 0 || !SweepsFor(snapshot)) continue;
                logger.LogWarning("Silo {Silos} declared dead: sweeping for its unfinished transactions now", string.Join(", ", newlyDead));
                _ = SweepTwice($"silo {string.Join(", ", newlyDead)} declared dead", stopping);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
        catch (Exception ex)
        {
            logger.LogError(ex, "Membership watch for recovery stopped; the periodic recovery sweep goes on");
        }
    }

    private bool SweepsFor(ClusterMembershipSnapshot snapshot)
    {
        var first = snapshot.Members.Values
            .Where(m => m.Status == SiloStatus.Active && (siloRoles.Of(m.SiloAddress) is not { } roles || ServiceRoles.Hosts(roles, ServiceRoles.Coordinator)))
            .Select(m => m.SiloAddress)
            .Append(localSilo.SiloAddress)
            .Min();
        return localSilo.SiloAddress.Equals(first);
    }

    private async Task SweepTwice(string why, CancellationToken stopping)
    {
        try
        {
            await Sweep(why);
            await Task.Delay(options.Value.CoordinatorGrace, stopping);
            await Sweep(why + ", follow-up");
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
    }

    private async Task Sweep(string why)
    {
        try
        {
            var report = await grains.GetGrain<IRecoveryAgentGrain>(0).SweepNow();
            logger.LogInformation("Recovery sweep ({Why}): {Coordinators} coordinators resumed, {Participants} participants asked, {Resolved} settled, {Errors} errors",
                why, report.CoordinatorsResumed, report.ParticipantsAsked, report.InDoubtResolved, report.Errors.Count);
        }
        catch (Exception ex)
        {
            logger.LogWarning("Recovery sweep ({Why}) failed, the periodic sweep will retry: {Error}", why, ex.GetBaseException().Message);
        }
    }
}
