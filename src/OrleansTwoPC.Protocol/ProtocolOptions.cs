namespace OrleansTwoPC.Protocol;

/// <summary>Timeouts and retry policy of the protocol. Bound from configuration section "TwoPC:Protocol".</summary>
public sealed class ProtocolOptions
{
    /// <summary>How long the coordinator waits for all votes before it aborts.</summary>
    public TimeSpan PrepareTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>First delay before a phase-two message is re-sent.</summary>
    public TimeSpan RetryBaseDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>Cap of the exponential phase-two backoff.</summary>
    public TimeSpan RetryMaxDelay { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long past a transaction's prepare deadline a participant remembers its decision, so a
    /// prepare arriving after its rollback is refused and repeated decisions are no-ops. Covers
    /// clock skew between silos; later, the deadline check alone refuses late prepares. Kept short because
    /// a hot participant persists its tombstones with every write.</summary>
    public TimeSpan DecisionRetention { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>A prepared participant that hears no decision for this long asks its coordinator.</summary>
    public TimeSpan InDoubtTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How many steps that change a participant's record (a prepare, a commit, a rollback) one write of it carries at
    /// most. A busy participant's write carries every step made while its previous write was in flight; past this
    /// many, further steps wait for the write after, so a write's size stays bounded whatever the load (each step
    /// changes at most a few of the record's entries, <see cref="Participant.ParticipantMachine{TResource,TWork}.MaxExpiriesPerStep"/>).
    /// </summary>
    public int MaxStepsPerWrite { get; set; } = 8;

    public const int DefaultDeadlineAheadFactor = 4;
    private TimeSpan? _maxPrepareDeadlineAhead;

    /// <summary>How far ahead of a participant's clock a prepare deadline may lie; a prepare with a later
    /// deadline is refused (no vote), so no reservation can outlive its transaction by a caller's choice.
    /// The coordinator's deadline lies <see cref="PrepareTimeout"/> ahead; the rest covers clock skew
    /// between silos. Unset, it is <see cref="DefaultDeadlineAheadFactor"/> times the prepare timeout.</summary>
    public TimeSpan MaxPrepareDeadlineAhead
    {
        get => _maxPrepareDeadlineAhead ?? (PrepareTimeout <= TimeSpan.MaxValue / DefaultDeadlineAheadFactor ? PrepareTimeout * DefaultDeadlineAheadFactor : TimeSpan.MaxValue);
        set => _maxPrepareDeadlineAhead = value;
    }

    /// <summary>Null when a prepare deadline is acceptable to a participant whose clock reads <paramref name="now"/>;
    /// otherwise the reason to vote no.</summary>
    public string? CheckPrepareDeadline(DateTimeOffset deadline, DateTimeOffset now) =>
        deadline - now > MaxPrepareDeadlineAhead
            ? $"prepare deadline {deadline:O} lies more than {MaxPrepareDeadlineAhead} ahead of this participant's clock ({now:O})"
            : null;

    public void Validate()
    {
        if (PrepareTimeout <= TimeSpan.Zero) throw new ArgumentException("PrepareTimeout must be positive");
        if (RetryBaseDelay <= TimeSpan.Zero) throw new ArgumentException("RetryBaseDelay must be positive");
        if (RetryMaxDelay < RetryBaseDelay) throw new ArgumentException("RetryMaxDelay must be at least RetryBaseDelay");
        if (DecisionRetention <= PrepareTimeout) throw new ArgumentException("DecisionRetention must exceed PrepareTimeout");
        if (InDoubtTimeout <= TimeSpan.Zero) throw new ArgumentException("InDoubtTimeout must be positive");
        if (MaxPrepareDeadlineAhead <= PrepareTimeout) throw new ArgumentException("MaxPrepareDeadlineAhead must exceed PrepareTimeout");
        if (MaxStepsPerWrite < 1) throw new ArgumentException("MaxStepsPerWrite must be at least 1");
    }

    /// <summary>Capped exponential backoff: base * 2^(attempt-1), never above the cap.</summary>
    public TimeSpan RetryDelay(int attempt)
    {
        if (attempt < 1) attempt = 1;
        var exponent = Math.Min(attempt - 1, 30);
        var ticks = RetryBaseDelay.Ticks * (1L << exponent);
        return ticks <= 0 || ticks > RetryMaxDelay.Ticks ? RetryMaxDelay : TimeSpan.FromTicks(ticks);
    }
}
