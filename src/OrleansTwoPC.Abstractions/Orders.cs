namespace OrleansTwoPC.Abstractions;

/// <summary>One line of an order: quantity of a SKU at a unit price in minor currency units (cents).</summary>
[GenerateSerializer, Immutable, Alias("twopc.OrderLine")]
public sealed record OrderLine(
    [property: Id(0)] string Sku,
    [property: Id(1)] int Quantity,
    [property: Id(2)] long UnitPrice);

/// <summary>An order to place atomically: reserve the lines' stock, charge the account, create the shipment.</summary>
[GenerateSerializer, Immutable, Alias("twopc.OrderRequest")]
public sealed record OrderRequest(
    [property: Id(0)] string OrderId,
    [property: Id(1)] IReadOnlyList<OrderLine> Lines,
    [property: Id(2)] string AccountId,
    [property: Id(3)] string ShippingAddress);

public enum OrderStatus
{
    /// <summary>Applied in all three services.</summary>
    Committed = 1,
    /// <summary>Applied nowhere; see the votes and reason.</summary>
    Aborted = 2,
    /// <summary>Bad input: no transaction was started, nothing changed.</summary>
    Rejected = 3,
    /// <summary>The decision write failed with an unknown result; recovery will finish it one way or the other.</summary>
    InDoubt = 4,
    /// <summary>Could not start: a service or its storage is unavailable. Nothing was decided or changed.</summary>
    Unavailable = 5,
}

[GenerateSerializer, Immutable, Alias("twopc.ParticipantVote")]
public sealed record ParticipantVote(
    [property: Id(0)] string Participant,
    [property: Id(1)] string Vote,
    [property: Id(2)] string? Reason);

/// <summary>What placing an order returned.</summary>
[GenerateSerializer, Immutable, Alias("twopc.OrderOutcome")]
public sealed record OrderOutcome(
    [property: Id(0)] string OrderId,
    [property: Id(1)] string TransactionId,
    [property: Id(2)] OrderStatus Status,
    [property: Id(3)] string? Reason,
    [property: Id(4)] IReadOnlyList<ParticipantVote> Votes,
    [property: Id(5)] long TotalAmount)
{
    public static OrderOutcome Rejected(string orderId, string reason) =>
        new(orderId ?? "", TransactionIds.FromOrderId(orderId ?? ""), OrderStatus.Rejected, reason, Array.Empty<ParticipantVote>(), 0);
}

public static class TransactionIds
{
    /// <summary>The transaction id is the order id with a prefix: resubmitting an order finds the same transaction.</summary>
    public static string FromOrderId(string orderId) => "tx-" + orderId;
}
