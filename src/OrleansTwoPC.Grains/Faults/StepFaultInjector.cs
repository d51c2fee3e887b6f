using System.Collections.Concurrent;

namespace OrleansTwoPC.Grains.Faults;

/// <summary>The kinds of step a participant applies to its in-memory record.</summary>
public enum StepKind
{
    Prepare = 1,
    Commit = 2,
    Rollback = 3,
    /// <summary>Applying the coordinators' answers to an in-doubt inquiry.</summary>
    Resolve = 4,
    /// <summary>An administrator's change (seeding stock or a balance).</summary>
    Admin = 5,
    /// <summary>Reads: snapshots, statuses, the in-doubt listing.</summary>
    Read = 6,
}

/// <summary>
/// Fault seam for the participants' in-memory steps, one per silo, inert unless armed: the next step of the
/// armed kind at a participant throws right after it has changed the record, as a bug or an arithmetic
/// overflow half-way through a step would. Tests use it to check that the activation then falls back to
/// what is stored instead of keeping (and later writing) a change nobody made durable.
/// </summary>
public sealed class StepFaultInjector
{
    private readonly ConcurrentDictionary<(string Participant, StepKind Kind), bool> _armed = new();

    public void ThrowAfterNextStep(string participant, StepKind kind) => _armed[(participant, kind)] = true;

    public void Clear() => _armed.Clear();

    /// <summary>Called after each step; throws once for an armed participant and kind.</summary>
    public void AfterStep(string participant, StepKind kind)
    {
        if (_armed.IsEmpty || !_armed.TryRemove((participant, kind), out _)) return;
        // A System exception: it reaches callers in other processes as itself.
        throw new InvalidOperationException($"injected fault: {kind} step at {participant} failed after changing the record");
    }
}
