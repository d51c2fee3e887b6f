using Microsoft.Extensions.Logging;
using OrleansTwoPC.Grains.Telemetry;
using OrleansTwoPC.Protocol;

namespace OrleansTwoPC.Grains.Recovery;

/// <summary>
/// Drives unfinished transactions to their end: resumes coordinators whose decision is durable but not
/// acknowledged by everyone, and makes participants that hold prepared transactions ask their
/// coordinators (which answer abort when they have no record: presumed abort).
/// </summary>
public sealed class RecoverySweeper(IGrainFactory grains, IRecoveryCatalog catalog, ILogger<RecoverySweeper> logger)
{
    public async Task<RecoveryReport> SweepAsync(TimeSpan coordinatorAge, TimeSpan participantAge, string? onlyTransaction = null)
    {
        var errors = new List<string>();
        var coordinators = onlyTransaction is null
            ? await catalog.UnfinishedCoordinatorsAsync(coordinatorAge)
            : new[] { onlyTransaction };
        var resumed = 0;
        foreach (var batch in coordinators.Chunk(32))
        {
            await Task.WhenAll(batch.Select(async tx =>
            {
                try
                {
                    var report = await grains.GetGrain<ITransactionCoordinatorGrain>(tx).Recover();
                    if (report.Phase != "Idle") Interlocked.Increment(ref resumed);
                }
                catch (Exception ex)
                {
                    lock (errors) errors.Add($"{tx}: {ex.GetBaseException().Message}");
                }
            }));
        }

        // Service by service: each lists its own in-doubt participants from its own database, and one service
        // that is down (or its database) does not keep the others' participants from being settled.
        var prepared = new List<PreparedParticipant>();
        foreach (var kind in ServiceRecovery.Kinds)
        {
            try
            {
                prepared.AddRange(await catalog.PreparedParticipantsAsync(kind, participantAge, onlyTransaction));
            }
            catch (Exception ex)
            {
                errors.Add($"{kind} participants: {ex.GetBaseException().Message}");
            }
        }

        var participants = prepared.Select(p => p.Participant).Distinct().ToList();
        var resolved = 0;
        foreach (var batch in participants.Chunk(32))
        {
            await Task.WhenAll(batch.Select(async p =>
            {
                try
                {
                    var settled = await grains.Participant(p).ResolveInDoubt(participantAge);
                    Interlocked.Add(ref resolved, settled);
                }
                catch (Exception ex)
                {
                    lock (errors) errors.Add($"{p}: {ex.GetBaseException().Message}");
                }
            }));
        }

        if (coordinators.Count + participants.Count > 0 || errors.Count > 0)
            logger.LogInformation("Recovery sweep: {Coordinators} coordinators resumed, {Participants} participants asked, {Resolved} in-doubt transactions settled, {Errors} errors",
                resumed, participants.Count, resolved, errors.Count);
        foreach (var error in errors) logger.LogWarning("Recovery sweep error: {Error}", error);
        TwoPcTelemetry.RecoveryRuns.Add(1);
        if (resolved > 0) TwoPcTelemetry.RecoveryResolved.Add(resolved);
        return new RecoveryReport(resumed, participants.Count, resolved, errors);
    }
}
