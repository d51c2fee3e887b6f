using System.Globalization;

namespace OrleansTwoPC.Client;

/// <summary>Parsers for the values given on the command line. Each returns null and an error message on bad input.</summary>
public static class InputParsers
{
    /// <summary><c>SKU:QTY:PRICE</c>, price in minor units. A SKU may itself contain ':', so the numbers are taken from the right.</summary>
    public static OrderLine? ParseLine(string text, out string? error)
    {
        error = null;
        var priceColon = text.LastIndexOf(':');
        var quantityColon = priceColon > 0 ? text.LastIndexOf(':', priceColon - 1) : -1;
        if (quantityColon <= 0)
        {
            error = $"bad --line '{text}': expected SKU:QTY:PRICE, e.g. SKU-1:2:1999 (price in minor units)";
            return null;
        }

        var sku = text[..quantityColon];
        var quantityText = text[(quantityColon + 1)..priceColon];
        var priceText = text[(priceColon + 1)..];
        if (!int.TryParse(quantityText, NumberStyles.None, CultureInfo.InvariantCulture, out var quantity) || quantity <= 0)
        {
            error = $"bad --line '{text}': quantity '{quantityText}' is not a positive whole number";
            return null;
        }

        if (!long.TryParse(priceText, NumberStyles.None, CultureInfo.InvariantCulture, out var price) || price <= 0)
        {
            error = $"bad --line '{text}': price '{priceText}' is not a positive whole number of minor units";
            return null;
        }

        if (CheckId(sku, "SKU") is { } idError)
        {
            error = $"bad --line '{text}': {idError}";
            return null;
        }

        return new OrderLine(sku, quantity, price);
    }

    /// <summary><c>KEY=VALUE</c> with a non-negative whole number (stock units or money in minor units).</summary>
    public static (string Key, long Value)? ParseAssignment(string text, string option, string what, out string? error)
    {
        error = null;
        var equals = text.LastIndexOf('=');
        if (equals <= 0 || equals == text.Length - 1)
        {
            error = $"bad {option} '{text}': expected {(option == "--sku" ? "SKU=QTY, e.g. SKU-1=100" : "ACCT=AMOUNT, e.g. acct-1=50000")}";
            return null;
        }

        var key = text[..equals];
        var valueText = text[(equals + 1)..];
        if (!long.TryParse(valueText, NumberStyles.None, CultureInfo.InvariantCulture, out var value))
        {
            error = $"bad {option} '{text}': '{valueText}' is not a non-negative whole number";
            return null;
        }

        if (CheckId(key, what) is { } idError)
        {
            error = $"bad {option} '{text}': {idError}";
            return null;
        }

        return (key, value);
    }

    /// <summary>An order id or a transaction id (<c>tx-...</c>) to the transaction id.</summary>
    public static string ToTransactionId(string id)
    {
        var trimmed = id.Trim();
        return trimmed.StartsWith("tx-", StringComparison.Ordinal) ? trimmed : TransactionIds.FromOrderId(trimmed);
    }

    /// <summary>The id rules of the order validation (letters, digits, <c>. _ : -</c>); null when valid.</summary>
    public static string? CheckId(string id, string what)
    {
        try
        {
            OrderPlan.CheckResourceId(id, what);
            return null;
        }
        catch (OrderValidationException ex)
        {
            return ex.Message;
        }
    }
}
