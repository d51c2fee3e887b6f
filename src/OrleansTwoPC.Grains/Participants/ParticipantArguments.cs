namespace OrleansTwoPC.Grains.Participants;

/// <summary>
/// The participants' contract checks, made before a request touches any state. A prepare that fails them
/// votes no with the reason; a phase-two, recovery or status call throws an <see cref="ArgumentException"/>
/// (a type every client can deserialize). Amounts and shipment quantities are the resource rules' to check.
/// </summary>
public static class ParticipantArguments
{
    /// <summary>What every transaction id starts with: it is its coordinator's key, derived from an order id.</summary>
    private static readonly string Prefix = TransactionIds.FromOrderId("");

    /// <summary>Null when <paramref name="transactionId"/> can name a transaction (the prefix, then a valid
    /// order id); otherwise what is wrong with it.</summary>
    public static string? CheckTransactionId(string? transactionId)
    {
        if (string.IsNullOrWhiteSpace(transactionId)) return "transaction id is blank";
        if (!transactionId.StartsWith(Prefix, StringComparison.Ordinal))
            return $"transaction id '{Shorten(transactionId)}' does not start with '{Prefix}'";
        try
        {
            OrderPlan.CheckResourceId(transactionId[Prefix.Length..], $"order id of transaction id '{Shorten(transactionId)}'");
            return null;
        }
        catch (OrderValidationException ex)
        {
            return ex.Message;
        }
    }

    public static void RequireTransactionId(string? transactionId)
    {
        if (CheckTransactionId(transactionId) is { } problem) throw new ArgumentException(problem, nameof(transactionId));
    }

    /// <summary>Null when a shipment request is well formed (lines present, valid SKUs, an address of
    /// acceptable length); otherwise what is wrong with it.</summary>
    public static string? CheckShipment(ShipmentRequest? shipment)
    {
        if (shipment is null) return "shipment request is missing";
        if (string.IsNullOrWhiteSpace(shipment.Address)) return "shipping address is blank";
        if (shipment.Address.Length > OrderPlan.MaxAddressLength) return $"shipping address is longer than {OrderPlan.MaxAddressLength} characters";
        if (shipment.Lines is null || shipment.Lines.Count == 0) return "nothing to ship";
        // Every line is an inventory participant, next to the account and the shipment.
        if (shipment.Lines.Count > OrderPlan.MaxParticipants - 2) return $"{shipment.Lines.Count} shipment lines; an order has at most {OrderPlan.MaxParticipants - 2} SKUs";
        for (var i = 0; i < shipment.Lines.Count; i++)
        {
            if (shipment.Lines[i] is not { } line) return $"shipment line {i + 1} is missing";
            try
            {
                OrderPlan.CheckResourceId(line.Sku, $"SKU of shipment line {i + 1}");
            }
            catch (OrderValidationException ex)
            {
                return ex.Message;
            }
        }
        return null;
    }

    /// <summary>Echoes at most an id's length of a caller's text into a reason.</summary>
    private static string Shorten(string text) => text.Length <= OrderPlan.MaxIdLength ? text : text[..OrderPlan.MaxIdLength] + "...";
}
