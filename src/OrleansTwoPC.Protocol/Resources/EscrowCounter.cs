using OrleansTwoPC.Protocol.Participant;

namespace OrleansTwoPC.Protocol.Resources;

/// <summary>A committed quantity (units on hand, money in minor units) that prepares reserve from.</summary>
public sealed class EscrowCounter
{
    /// <summary>False until seeded: an unseeded SKU or account is unknown.</summary>
    public bool Exists { get; set; }
    public long Committed { get; set; }

    /// <summary>Total taken out by commits, for reconciliation (units sold, money charged).</summary>
    public long ConsumedTotal { get; set; }

    /// <summary>Total put in by administrators (seeding and later adjustments). Conservation:
    /// Committed + ConsumedTotal == SuppliedTotal, checked by the invariant checker.</summary>
    public long SuppliedTotal { get; set; }

    /// <summary>Null when <see cref="SetByAdministrator"/> can take <paramref name="value"/>; otherwise why not
    /// (the supplied total, committed plus consumed, must stay countable).</summary>
    public string? CheckSetByAdministrator(long value)
    {
        if (value < 0) return $"cannot be negative, got {value}";
        var supplied = (Int128)SuppliedTotal + value - Committed;
        return supplied > long.MaxValue || supplied < long.MinValue
            ? $"{value} would bring the supplied total (committed plus the {ConsumedTotal} consumed) past what this counter can account ({long.MaxValue})"
            : null;
    }

    /// <summary>Admin: set the committed value (stock count, balance), accounting the change as supply.</summary>
    public void SetByAdministrator(long value)
    {
        SuppliedTotal = checked(SuppliedTotal + (value - Committed));
        Committed = value;
        Exists = true;
    }
}

/// <summary>
/// Escrow on a counter: a prepare reserves an amount while committed minus reserved covers it, so many
/// transactions can hold reservations on one hot SKU or account at once. Commit consumes the
/// reservation; rollback just drops it. The committed value can therefore never go below zero.
/// </summary>
public sealed class EscrowRules : IResourceRules<EscrowCounter, long>
{
    private readonly string _shortage;

    /// <param name="shortage">Words for a refusal, e.g. "insufficient stock".</param>
    public EscrowRules(string shortage) => _shortage = shortage;

    public static long Available(EscrowCounter counter, IEnumerable<long> reserved) => counter.Committed - reserved.Sum();

    public string? CheckWork(long work) => work <= 0 ? $"amount must be positive, got {work}" : null;

    public bool SameWork(long reserved, long work) => reserved == work;

    public string? CheckReserve(EscrowCounter resource, IReadOnlyCollection<long> reserved, long work)
    {
        if (!resource.Exists) return Refusals.UnknownResource;
        var available = Available(resource, reserved);
        return work > available ? $"{_shortage}: requested {work}, available {available}" : null;
    }

    public void Apply(EscrowCounter resource, long work, string transactionId, DateTimeOffset now)
    {
        // CheckReserve guaranteed committed - all reservations >= 0, so this cannot go negative. Both are
        // computed before either is assigned: an overflow changes nothing.
        var committed = checked(resource.Committed - work);
        var consumed = checked(resource.ConsumedTotal + work);
        resource.Committed = committed;
        resource.ConsumedTotal = consumed;
    }

    public void Release(EscrowCounter resource, long work, string transactionId, DateTimeOffset now)
    {
        // Nothing was taken from the committed value; dropping the reservation is the release.
    }

    public EscrowCounter CopyResource(EscrowCounter resource) => new()
    {
        Exists = resource.Exists,
        Committed = resource.Committed,
        ConsumedTotal = resource.ConsumedTotal,
        SuppliedTotal = resource.SuppliedTotal,
    };

    public long CopyWork(long work) => work;
}
