namespace OrleansTwoPC.Abstractions;

/// <summary>Placing an order from an application (or <c>tpc</c>): one call that always ends in an <see cref="OrderOutcome"/>.</summary>
public static class OrderPlacement
{
    /// <summary>
    /// Places <paramref name="order"/> with its coordinator and returns the outcome. When the answer is lost on
    /// the way (no answer within <see cref="PlaceOrderTimeouts.Response"/>, or the silo or connection it went
    /// to died), the outcome is <see cref="OrderStatus.InDoubt"/>: the order may or may not have been decided,
    /// and placing the same order again returns its recorded outcome (or runs it, if it never started).
    /// </summary>
    public static async Task<OrderOutcome> PlaceOrderAsync(this IGrainFactory grains, OrderRequest order)
    {
        ArgumentNullException.ThrowIfNull(grains);
        ArgumentNullException.ThrowIfNull(order);
        var transactionId = TransactionIds.FromOrderId(order.OrderId ?? "");
        try
        {
            return await grains.GetGrain<ITransactionCoordinatorGrain>(transactionId).PlaceOrder(order);
        }
        catch (Exception ex) when (IsLostAnswer(ex))
        {
            var why = ex is TimeoutException ? $"none within {PlaceOrderTimeouts.Response.TotalSeconds:0.#} s" : TwoPcException.OneLine(ex.Message);
            return new OrderOutcome(order.OrderId ?? "", transactionId, OrderStatus.InDoubt,
                $"no answer from the coordinator ({why}); its silo may have died mid-order, so the outcome is unknown: placing the same order again returns it",
                [], TotalOrZero(order));
        }
    }

    /// <summary>The call's answer was lost: a timeout, or the silo or connection it went to is gone.</summary>
    public static bool IsLostAnswer(Exception ex) =>
        ex is TimeoutException or OrleansMessageRejectionException || ex.GetType().Name == "ConnectionFailedException";

    private static long TotalOrZero(OrderRequest order)
    {
        try
        {
            return OrderPlan.Create(order).TotalAmount;
        }
        catch (OrderValidationException)
        {
            return 0;
        }
    }
}
