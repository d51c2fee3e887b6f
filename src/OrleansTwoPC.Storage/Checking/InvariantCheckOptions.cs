namespace OrleansTwoPC.Storage.Checking;

/// <summary>
/// What the <see cref="InvariantChecker"/> looks at and how strictly. The defaults check everything in the
/// databases and tolerate nothing in flight (use them on a quiescent system).
/// </summary>
/// <remarks>
/// The scope exists because a shared database may hold other tests' data. Each dimension is independent;
/// null means "all". The order-id prefix selects coordinator records (by their order summary's order id;
/// a record without one, such as a presumed abort, by its transaction id without the <c>tx-</c> prefix)
/// and shipments (keyed by order id). Conservation per SKU or account counts only the committed records
/// in scope, so with a prefix the SKUs and accounts in scope must be used only by orders with that prefix.
/// </remarks>
public sealed record InvariantCheckOptions
{
    /// <summary>SKUs to check (null: every SKU in the inventory database).</summary>
    public IReadOnlyCollection<string>? Skus { get; init; }

    /// <summary>Accounts to check (null: every account in the payments database).</summary>
    public IReadOnlyCollection<string>? Accounts { get; init; }

    /// <summary>Only orders (coordinator records, shipments) whose id starts with this (null: all).</summary>
    public string? OrderIdPrefix { get; init; }

    /// <summary>
    /// Null: strict, for a quiescent system. Otherwise a live system's in-flight work younger than this is
    /// tolerated: prepared reservations (by their prepare time) and decided-but-unfinished transactions (by
    /// their decision time) are not reported under I5, and the effects of such transactions may or may not
    /// be applied yet (I2 accepts a range, the committed-shipment check of I4 is skipped for them).
    /// </summary>
    public TimeSpan? AllowInFlight { get; init; }

    /// <summary>Check everything, strictly.</summary>
    public static InvariantCheckOptions Everything { get; } = new();
}
