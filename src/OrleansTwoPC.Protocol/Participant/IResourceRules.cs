namespace OrleansTwoPC.Protocol.Participant;

/// <summary>
/// The business side of a participant: whether a piece of work can be reserved next to the open
/// reservations, and what commit and rollback do to the committed resource.
/// </summary>
public interface IResourceRules<TResource, TWork>
{
    /// <summary>Null when <paramref name="work"/> is well formed (positive amounts, valid lines), whatever the
    /// resource holds; otherwise the reason to vote no. Checked before anything else in a prepare.</summary>
    string? CheckWork(TWork work);

    /// <summary>Whether two prepares carry the same content: a repeated prepare must match what is reserved.</summary>
    bool SameWork(TWork reserved, TWork work);

    /// <summary>Null when <paramref name="work"/> can be reserved; otherwise the reason to vote no.</summary>
    string? CheckReserve(TResource resource, IReadOnlyCollection<TWork> reserved, TWork work);

    /// <summary>Commit: make the reserved work part of the committed state. Changes nothing when it throws.</summary>
    void Apply(TResource resource, TWork work, string transactionId, DateTimeOffset now);

    /// <summary>Rollback of a prepared transaction: undo whatever the reservation changed.</summary>
    void Release(TResource resource, TWork work, string transactionId, DateTimeOffset now);

    /// <summary>A deep copy sharing nothing mutable with <paramref name="resource"/> (for a write snapshot).</summary>
    TResource CopyResource(TResource resource);

    /// <summary>A deep copy sharing nothing mutable with <paramref name="work"/> (for a write snapshot).</summary>
    TWork CopyWork(TWork work);
}
