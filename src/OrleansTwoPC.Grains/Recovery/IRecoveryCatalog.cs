using OrleansTwoPC.Protocol;

namespace OrleansTwoPC.Grains.Recovery;

/// <summary>A participant holding a prepared, undecided transaction.</summary>
public sealed record PreparedParticipant(ParticipantId Participant, string TransactionId, string Coordinator, DateTimeOffset PreparedAt);

/// <summary>
/// What recovery needs to know from the databases, read directly (not through grains): which
/// transactions are unfinished anywhere. Implemented at the storage edge by the host.
/// </summary>
public interface IRecoveryCatalog
{
    /// <summary>Coordinators with a durable decision that not every participant acknowledged yet.</summary>
    Task<IReadOnlyList<string>> UnfinishedCoordinatorsAsync(TimeSpan olderThan, CancellationToken cancellationToken = default);

    /// <summary>Prepared (in-doubt) participant entries, optionally of one transaction.</summary>
    Task<IReadOnlyList<PreparedParticipant>> PreparedParticipantsAsync(TimeSpan olderThan, string? transactionId = null, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<UnfinishedTransaction>> ListUnfinishedAsync(CancellationToken cancellationToken = default);

    Task<TransactionTimeline> TimelineAsync(string transactionId, CancellationToken cancellationToken = default);
}
