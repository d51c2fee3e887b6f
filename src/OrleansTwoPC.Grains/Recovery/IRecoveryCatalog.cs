using OrleansTwoPC.Protocol;

namespace OrleansTwoPC.Grains.Recovery;

/// <summary>A participant holding a prepared, undecided transaction.</summary>
public sealed record PreparedParticipant(ParticipantId Participant, string TransactionId, string Coordinator, DateTimeOffset PreparedAt);

/// <summary>
/// What recovery needs to know from the databases, read directly (not through grains): which
/// transactions are unfinished anywhere. Implemented at the storage edge by the host. A silo reads only the
/// databases of its own services: what another service's participants hold is asked of a silo of that
/// service (<see cref="IServiceRecoveryGrain"/>), which reads it from its own database.
/// </summary>
public interface IRecoveryCatalog
{
    /// <summary>Coordinators with a durable decision that not every participant acknowledged yet.</summary>
    Task<IReadOnlyList<string>> UnfinishedCoordinatorsAsync(TimeSpan olderThan, CancellationToken cancellationToken = default);

    /// <summary>Whether this silo reads the database of <paramref name="kind"/>'s service itself.</summary>
    bool Reads(ParticipantKind kind);

    /// <summary>Prepared (in-doubt) participant entries of one service, optionally of one transaction.</summary>
    Task<IReadOnlyList<PreparedParticipant>> PreparedParticipantsAsync(ParticipantKind kind, TimeSpan olderThan, string? transactionId = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// What one service's participants recorded about a transaction (prepared, committed, rolled back): those
    /// with <paramref name="keys"/>, and with <paramref name="findOthers"/> any other that mentions it.
    /// </summary>
    Task<IReadOnlyList<TimelineEvent>> ParticipantEventsAsync(ParticipantKind kind, string transactionId, IReadOnlyList<string> keys, bool findOthers, CancellationToken cancellationToken = default);

    Task<IReadOnlyList<UnfinishedTransaction>> ListUnfinishedAsync(CancellationToken cancellationToken = default);

    Task<TransactionTimeline> TimelineAsync(string transactionId, CancellationToken cancellationToken = default);
}
