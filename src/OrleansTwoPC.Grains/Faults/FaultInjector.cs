using System.Collections.Concurrent;

namespace OrleansTwoPC.Grains.Faults;

public enum ParticipantFault
{
    /// <summary>Vote no without touching the resource.</summary>
    VoteNo = 1,
    /// <summary>Throw from prepare, as a crashed or broken service would.</summary>
    Throw = 2,
    /// <summary>Block the participant for a while before it handles the prepare (a slow service).</summary>
    Hang = 3,
    /// <summary>Commit and rollback fail, and the participant's own inquiry about the transaction fails, as if
    /// the participant were cut off from the coordinator (a partition) until the rule is removed.</summary>
    Unreachable = 4,
}

public sealed record FaultRule(ParticipantFault Fault, TimeSpan HangFor);

/// <summary>Raised by a participant told to fail by the fault injector.</summary>
public sealed class InjectedFaultException(string message) : Exception(message);

/// <summary>
/// Fault-injection seam, one per silo. Compiled into the product but inert: with no rule registered the
/// participants' check is one empty-dictionary test. Tests register rules for a participant and a
/// transaction id (or "*" for every transaction) on every silo.
/// </summary>
public sealed class FaultInjector
{
    public const string AnyTransaction = "*";
    private readonly ConcurrentDictionary<(string Participant, string TransactionId), FaultRule> _rules = new();

    public void Inject(string participant, string transactionId, ParticipantFault fault, TimeSpan hangFor = default)
    {
        if (fault == ParticipantFault.Hang && hangFor <= TimeSpan.Zero)
            throw new ArgumentException("a hang needs a positive duration", nameof(hangFor));
        _rules[(participant, transactionId)] = new FaultRule(fault, hangFor);
    }

    public void Clear() => _rules.Clear();

    public void Remove(string participant, string transactionId) => _rules.TryRemove((participant, transactionId), out _);

    public FaultRule? For(string participant, string transactionId)
    {
        if (_rules.IsEmpty) return null;
        return _rules.TryGetValue((participant, transactionId), out var rule) || _rules.TryGetValue((participant, AnyTransaction), out rule)
            ? rule
            : null;
    }
}
