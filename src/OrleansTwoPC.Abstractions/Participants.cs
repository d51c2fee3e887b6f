namespace OrleansTwoPC.Abstractions;

/// <summary>
/// A participant operation only the cluster itself may call (the coordinator, recovery): the silos refuse it
/// from an external client with an <see cref="UnauthorizedAccessException"/>. Orders go through
/// <see cref="ITransactionCoordinatorGrain"/>; the admin operations stay open to clients.
/// </summary>
[AttributeUsage(AttributeTargets.Method, Inherited = true)]
public sealed class ClusterOnlyAttribute : Attribute;

[GenerateSerializer, Immutable, Alias("twopc.VoteReply")]
public sealed record VoteReply(
    [property: Id(0)] bool Yes,
    [property: Id(1)] string? Reason);

/// <summary>Counter participant (SKU stock or account balance) as seen from outside: committed state only.</summary>
[GenerateSerializer, Immutable, Alias("twopc.CounterSnapshot")]
public sealed record CounterSnapshot(
    [property: Id(0)] string Key,
    [property: Id(1)] bool Exists,
    [property: Id(2)] long Committed,
    [property: Id(3)] long Reserved,
    [property: Id(4)] long Available,
    [property: Id(5)] int OpenReservations,
    [property: Id(6)] long ConsumedTotal,
    [property: Id(7)] int LatePreparesRefused,
    [property: Id(8)] long SuppliedTotal);

[GenerateSerializer, Immutable, Alias("twopc.ShipmentSnapshot")]
public sealed record ShipmentSnapshot(
    [property: Id(0)] string OrderId,
    [property: Id(1)] string Status,
    [property: Id(2)] string? Address,
    [property: Id(3)] string? TransactionId,
    [property: Id(4)] bool TentativeOpen,
    [property: Id(5)] int LatePreparesRefused);

/// <summary>Phase two, common to every participant. Both are idempotent; the reply is the acknowledgement.</summary>
public interface ITransactionParticipantGrain : IGrainWithStringKey
{
    /// <param name="prepareDeadline">Names the decided attempt; a reservation of another attempt is not applied.</param>
    [ClusterOnly]
    Task Commit(string transactionId, DateTimeOffset? prepareDeadline = null);

    [ClusterOnly]
    Task Rollback(string transactionId);

    /// <summary>Asks the coordinators of transactions prepared here longer than <paramref name="olderThan"/>
    /// for their outcome and applies it. Returns how many were settled.</summary>
    [ClusterOnly]
    Task<int> ResolveInDoubt(TimeSpan olderThan);

    /// <summary>This participant's view of a transaction: Unknown, Prepared, Committed or Aborted.</summary>
    Task<string> GetTransactionStatus(string transactionId);
}

/// <summary>One SKU's stock. Prepare reserves units (escrow); commit consumes them; rollback releases them.</summary>
[Alias("twopc.IInventoryGrain")]
public interface IInventoryGrain : ITransactionParticipantGrain
{
    [ClusterOnly]
    Task<VoteReply> Prepare(string transactionId, long quantity, DateTimeOffset deadline);

    /// <summary>Admin: set the units on hand (creates the SKU). Refused below what is reserved.</summary>
    Task SetStock(long onHand);

    Task<CounterSnapshot> GetSnapshot();
}

/// <summary>One account's balance. Prepare places a hold; commit debits; rollback releases the hold.</summary>
[Alias("twopc.IPaymentAccountGrain")]
public interface IPaymentAccountGrain : ITransactionParticipantGrain
{
    [ClusterOnly]
    Task<VoteReply> Prepare(string transactionId, long amount, DateTimeOffset deadline);

    /// <summary>Admin: set the balance in minor units (opens the account). Refused below what is held.</summary>
    Task SetBalance(long balance);

    Task<CounterSnapshot> GetSnapshot();
}

[GenerateSerializer, Immutable, Alias("twopc.ShipmentRequest")]
public sealed record ShipmentRequest(
    [property: Id(0)] string Address,
    [property: Id(1)] IReadOnlyList<OrderLine> Lines);

/// <summary>One order's shipment. Prepare creates a tentative record; commit confirms; rollback cancels.</summary>
[Alias("twopc.IShipmentGrain")]
public interface IShipmentGrain : ITransactionParticipantGrain
{
    [ClusterOnly]
    Task<VoteReply> Prepare(string transactionId, ShipmentRequest shipment, DateTimeOffset deadline);

    Task<ShipmentSnapshot> GetSnapshot();
}
