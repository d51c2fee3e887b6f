using System.Globalization;

namespace OrleansTwoPC.Client;

/// <summary>Parsers for the values given on the command line. Each returns null and an error message on bad input.</summary>
public static class InputParsers
{
    /// <summary>The keys of the spelled-out line form <c>sku=SKU,qty=QTY,price=PRICE</c>.</summary>
    public const string SkuKey = "sku";
    public const string QuantityKey = "qty";
    public const string PriceKey = "price";

    private const string LineSyntax = "SKU:QTY:PRICE, e.g. SKU-1:2:1999, or sku=SKU,qty=QTY,price=PRICE (price in minor units)";

    /// <summary>
    /// An order line in one of two forms, price in minor units: <c>SKU:QTY:PRICE</c> (exactly two ':', so
    /// only for a SKU without ':'), or <c>sku=SKU,qty=QTY,price=PRICE</c> for any SKU (ids cannot contain
    /// '=' or ','). A line with more than two ':' is refused rather than guessed at: <c>A:1:1:1</c> could be
    /// SKU <c>A:1</c> or a typing error.
    /// </summary>
    public static OrderLine? ParseLine(string text, out string? error)
    {
        error = null;
        string? problem;
        string sku, quantityText, priceText;
        if (text.Contains('='))
        {
            problem = SplitKeyed(text, out sku, out quantityText, out priceText);
        }
        else
        {
            var parts = text.Split(':');
            problem = parts.Length switch
            {
                3 => null,
                < 3 => $"expected {LineSyntax}",
                _ => $"{parts.Length - 1} ':' where SKU:QTY:PRICE has 2; a SKU containing ':' is written sku=SKU,qty=QTY,price=PRICE",
            };
            (sku, quantityText, priceText) = parts.Length == 3 ? (parts[0], parts[1], parts[2]) : ("", "", "");
        }

        if (problem is null && CheckId(sku, "SKU") is { } idError) problem = idError;
        var quantity = 0;
        if (problem is null && (!int.TryParse(quantityText, NumberStyles.None, CultureInfo.InvariantCulture, out quantity) || quantity <= 0))
        {
            problem = $"quantity '{quantityText}' is not a whole number from 1 to {int.MaxValue.ToString(CultureInfo.InvariantCulture)}";
        }

        long price = 0;
        if (problem is null && (!long.TryParse(priceText, NumberStyles.None, CultureInfo.InvariantCulture, out price) || price <= 0))
        {
            problem = $"price '{priceText}' is not a whole number of minor units from 1 to {long.MaxValue.ToString(CultureInfo.InvariantCulture)}";
        }

        if (problem is not null)
        {
            error = $"bad --line '{text}': {problem}";
            return null;
        }

        return new OrderLine(sku, quantity, price);
    }

    /// <summary>The <c>--line</c> text that <see cref="ParseLine"/> reads back as exactly this line.</summary>
    public static string FormatLine(OrderLine line)
    {
        var quantity = line.Quantity.ToString(CultureInfo.InvariantCulture);
        var price = line.UnitPrice.ToString(CultureInfo.InvariantCulture);
        return line.Sku.Contains(':')
            ? $"{SkuKey}={line.Sku},{QuantityKey}={quantity},{PriceKey}={price}"
            : $"{line.Sku}:{quantity}:{price}";
    }

    private static string? SplitKeyed(string text, out string sku, out string quantity, out string price)
    {
        sku = quantity = price = "";
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var field in text.Split(','))
        {
            var equals = field.IndexOf('=');
            if (equals < 0) return $"'{field}' is not KEY=VALUE; expected {LineSyntax}";
            var key = field[..equals];
            var value = field[(equals + 1)..];
            if (!seen.Add(key)) return $"{key}= is given twice";
            switch (key)
            {
                case SkuKey: sku = value; break;
                case QuantityKey: quantity = value; break;
                case PriceKey: price = value; break;
                default: return $"unknown key '{key}' (expected {SkuKey}, {QuantityKey} and {PriceKey})";
            }
        }

        var missing = new[] { SkuKey, QuantityKey, PriceKey }.Where(k => !seen.Contains(k)).ToList();
        return missing.Count == 0 ? null : $"{string.Join(" and ", missing.Select(k => k + "="))} missing; expected {LineSyntax}";
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
