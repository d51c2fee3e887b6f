namespace OrleansTwoPC.Protocol.Participant;

/// <summary>
/// What a participant persists: its committed resource, the prepared (tentative, invisible) work of
/// each open transaction, and a tombstone per recently decided transaction so that repeated decisions
/// are no-ops and a prepare arriving after its rollback is refused.
/// </summary>
public sealed class ParticipantRecord<TResource, TWork> where TResource : new()
{
    public TResource Resource { get; set; } = new();
    public Dictionary<string, PreparedTransaction<TWork>> Prepared { get; set; } = new();
    public TombstoneMap Decided { get; set; } = new();
}

public sealed class PreparedTransaction<TWork>
{
    public TWork Work { get; set; } = default!;

    /// <summary>Key of the coordinator to ask when no decision arrives.</summary>
    public string Coordinator { get; set; } = "";

    public DateTimeOffset PreparedAt { get; set; }

    /// <summary>The coordinator's prepare deadline. It also names the attempt: a commit or an inquiry
    /// answer applies this reservation only when it names the same deadline.</summary>
    public DateTimeOffset Deadline { get; set; }
}

/// <summary>A tombstone. Immutable once made, so copies of a record share them (a hot participant holds thousands).</summary>
public sealed class DecidedTransaction
{
    public Decision Outcome { get; init; }
    public DateTimeOffset DecidedAt { get; init; }

    /// <summary>Deadline of the attempt that was decided (null for a rollback of a never-prepared transaction).</summary>
    public DateTimeOffset? Deadline { get; init; }

    /// <summary>The tombstone is kept until then: past it, any prepare of this transaction is late anyway.</summary>
    public DateTimeOffset KeepUntil { get; init; }
}

/// <summary>A participant's view of one transaction.</summary>
public enum ParticipantTransactionStatus
{
    Unknown = 0,
    Prepared = 1,
    Committed = 2,
    Aborted = 3,
}
