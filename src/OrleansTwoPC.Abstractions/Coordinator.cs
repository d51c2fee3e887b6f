namespace OrleansTwoPC.Abstractions;

/// <summary>Coordinator of one transaction, keyed by transaction id (derived from the order id).</summary>
[Alias("twopc.ITransactionCoordinatorGrain")]
public interface ITransactionCoordinatorGrain : IGrainWithStringKey
{
    /// <summary>Runs Two-Phase Commit for the order. Answers once the decision is durable; phase two goes on
    /// in the background. Resubmitting the same order returns the same outcome.</summary>
    /// <remarks>A caller hears within <see cref="PlaceOrderTimeouts.Response"/> whatever the client's default
    /// response timeout: with no answer by then (the coordinator's silo died), the outcome is unknown and
    /// placing the same order again settles it.</remarks>
    [ResponseTimeout(PlaceOrderTimeouts.ResponseText)]
    Task<OrderOutcome> PlaceOrder(OrderRequest order);

    /// <summary>The transaction's durable state, for operators and tests.</summary>
    Task<TransactionReport> GetReport();

    /// <summary>A participant in doubt asks the outcome. With no record the answer is abort (presumed
    /// abort), made durable first so this transaction can never commit afterwards.</summary>
    Task<InquiryReply> QueryOutcome();

    /// <summary>Recovery: reload if needed and re-send a durable decision to every participant that has
    /// not acknowledged it.</summary>
    Task<TransactionReport> Recover();

    /// <summary>Operator: force ABORT when no decision is durable; refused once committed.</summary>
    Task<TransactionReport> HeuristicAbort(string reason);
}

[GenerateSerializer, Immutable, Alias("twopc.TransactionReport")]
public sealed record TransactionReport(
    [property: Id(0)] string TransactionId,
    [property: Id(1)] string Phase,
    [property: Id(2)] string Decision,
    [property: Id(3)] string? AbortReason,
    [property: Id(4)] IReadOnlyList<ParticipantVote> Votes,
    [property: Id(5)] IReadOnlyList<string> Unacknowledged,
    [property: Id(6)] DateTimeOffset? StartedAt,
    [property: Id(7)] DateTimeOffset? DecidedAt,
    [property: Id(8)] DateTimeOffset? CompletedAt);

/// <summary>How long a caller waits for <see cref="ITransactionCoordinatorGrain.PlaceOrder"/>.</summary>
public static class PlaceOrderTimeouts
{
    /// <summary>
    /// The coordinator answers within its prepare timeout (5 s by default) plus the decision write, or for a
    /// rejection plus at most 1 s of rollbacks; a longer wait means its silo died. Orleans' default of 30 s
    /// would keep a caller waiting that long.
    /// </summary>
    public const string ResponseText = "00:00:08";

    public static readonly TimeSpan Response = TimeSpan.Parse(ResponseText, System.Globalization.CultureInfo.InvariantCulture);
}
