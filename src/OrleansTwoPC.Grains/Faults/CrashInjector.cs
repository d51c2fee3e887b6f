using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace OrleansTwoPC.Grains.Faults;

/// <summary>Protocol steps at which a test can make the hosting silo "die".</summary>
public enum CrashPoint
{
    // Coordinator
    CoordinatorBeforeAnyPrepare = 1,
    CoordinatorAfterSomePreparesSent = 2,
    CoordinatorAfterVotesBeforeDecision = 3,
    CoordinatorAfterDecisionBeforePhaseTwo = 4,
    CoordinatorAfterSomeAcknowledgements = 5,

    // Participant
    ParticipantBeforeVote = 11,
    ParticipantAfterPrepareDurable = 12,
    ParticipantAfterDecisionBeforeApply = 13,
}

/// <summary>Which silo reached a crash point, for which transaction.</summary>
public sealed record CrashReport(CrashPoint Point, string TransactionId, string Where);

/// <summary>
/// Crash seam, one per silo, inert unless armed. When a grain reaches an armed point it reports it and
/// then never continues (the step after it never happens), so the test can kill the silo at exactly
/// that moment. Arming is per transaction (and participant, for participant points).
/// </summary>
public sealed class CrashInjector(ILogger<CrashInjector> logger)
{
    private readonly ConcurrentDictionary<(CrashPoint Point, string TransactionId, string Where), bool> _armed = new();
    private readonly TaskCompletionSource<CrashReport> _reached = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when any armed point on this silo is reached.</summary>
    public Task<CrashReport> Reached => _reached.Task;

    /// <param name="where">The participant ("inventory/SKU-1") for participant points; ignored for coordinator points.</param>
    public void Arm(CrashPoint point, string transactionId, string where = "") => _armed[(point, transactionId, Normalize(point, where))] = true;

    /// <summary>Disarms every point (tests call it once a crash fired, so survivors don't freeze too).</summary>
    public void DisarmAll() => _armed.Clear();

    public bool IsArmed(CrashPoint point, string transactionId, string where = "") =>
        !_armed.IsEmpty && _armed.ContainsKey((point, transactionId, Normalize(point, where)));

    /// <summary>Returns at once unless armed; when armed, reports and never returns.</summary>
    public Task Check(CrashPoint point, string transactionId, string where = "")
    {
        if (!IsArmed(point, transactionId, where)) return Task.CompletedTask;
        logger.LogWarning("Crash point {CrashPoint} reached {TransactionId} at {Where}: freezing until the silo is killed", point, transactionId, where);
        _reached.TrySetResult(new CrashReport(point, transactionId, where));
        return new TaskCompletionSource().Task;
    }

    private static string Normalize(CrashPoint point, string where) => (int)point >= 10 ? where : "";
}
