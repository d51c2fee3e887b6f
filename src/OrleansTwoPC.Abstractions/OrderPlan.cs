using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;

namespace OrleansTwoPC.Abstractions;

/// <summary>Thrown for an order that must not start a transaction; the message says what is wrong.</summary>
public sealed class OrderValidationException(string message) : Exception(message);

/// <summary>
/// A validated order: lines merged per SKU, the amount to charge, and the participants it touches.
/// Built before any transaction starts, so bad input changes nothing.
/// </summary>
public sealed partial class OrderPlan
{
    /// <summary>Most participants one transaction may have (SKUs + account + shipment).</summary>
    public const int MaxParticipants = 10;
    public const int MaxIdLength = 64;
    public const int MaxAddressLength = 500;

    private OrderPlan(OrderRequest order, IReadOnlyList<OrderLine> mergedLines, long total, string fingerprint)
    {
        Order = order;
        MergedLines = mergedLines;
        TotalAmount = total;
        Fingerprint = fingerprint;
    }

    public OrderRequest Order { get; }
    public string TransactionId => TransactionIds.FromOrderId(Order.OrderId);

    /// <summary>One line per SKU (quantities of repeated SKUs added), ordered by SKU.</summary>
    public IReadOnlyList<OrderLine> MergedLines { get; }
    public long TotalAmount { get; }

    /// <summary>SHA-256 over the order's canonical content: the same order id with other content is a conflict.</summary>
    public string Fingerprint { get; }

    public int ParticipantCount => MergedLines.Count + 2;

    /// <summary>Validates and plans; throws <see cref="OrderValidationException"/> with a clear message.</summary>
    public static OrderPlan Create(OrderRequest? order)
    {
        if (order is null) throw new OrderValidationException("order is missing");
        CheckId(order.OrderId, "order id");
        CheckId(order.AccountId, "account id");
        if (string.IsNullOrWhiteSpace(order.ShippingAddress)) throw new OrderValidationException("shipping address is blank");
        if (order.ShippingAddress.Length > MaxAddressLength) throw new OrderValidationException($"shipping address is longer than {MaxAddressLength} characters");
        if (order.Lines is null || order.Lines.Count == 0) throw new OrderValidationException("order has no lines");

        var merged = new SortedDictionary<string, (long Quantity, long UnitPrice)>(StringComparer.Ordinal);
        long total = 0;
        for (var i = 0; i < order.Lines.Count; i++)
        {
            var line = order.Lines[i] ?? throw new OrderValidationException($"line {i + 1} is missing");
            CheckId(line.Sku, $"SKU of line {i + 1}");
            if (line.Quantity <= 0) throw new OrderValidationException($"line {i + 1} ({line.Sku}): quantity must be positive, got {line.Quantity}");
            if (line.UnitPrice <= 0) throw new OrderValidationException($"line {i + 1} ({line.Sku}): unit price must be positive, got {line.UnitPrice}");
            try
            {
                total = checked(total + checked(line.Quantity * line.UnitPrice));
                if (merged.TryGetValue(line.Sku, out var existing))
                {
                    if (existing.UnitPrice != line.UnitPrice)
                        throw new OrderValidationException($"SKU {line.Sku} appears with two different unit prices");
                    merged[line.Sku] = (checked(existing.Quantity + line.Quantity), line.UnitPrice);
                }
                else merged[line.Sku] = (line.Quantity, line.UnitPrice);
            }
            catch (OverflowException)
            {
                throw new OrderValidationException($"line {i + 1} ({line.Sku}): order amount overflows");
            }
        }
        if (merged.Values.Any(v => v.Quantity > int.MaxValue))
            throw new OrderValidationException("merged quantity of a SKU overflows");
        if (merged.Count + 2 > MaxParticipants)
            throw new OrderValidationException($"order touches {merged.Count + 2} participants ({merged.Count} SKUs + account + shipment); at most {MaxParticipants} are allowed");

        var lines = merged.Select(kv => new OrderLine(kv.Key, (int)kv.Value.Quantity, kv.Value.UnitPrice)).ToList();
        return new OrderPlan(order, lines, total, ComputeFingerprint(order, lines));
    }

    private static void CheckId(string? id, string what)
    {
        if (string.IsNullOrWhiteSpace(id)) throw new OrderValidationException($"{what} is blank");
        if (id.Length > MaxIdLength) throw new OrderValidationException($"{what} is longer than {MaxIdLength} characters");
        if (!IdPattern().IsMatch(id)) throw new OrderValidationException($"{what} '{id}' may contain only letters, digits and . _ : -");
    }

    public static void CheckResourceId(string? id, string what) => CheckId(id, what);

    private static string ComputeFingerprint(OrderRequest order, IReadOnlyList<OrderLine> mergedLines)
    {
        // Every field is length-prefixed, so no text inside one field can imitate another field.
        var canonical = new StringBuilder();
        void Field(string value) => canonical.Append(value.Length).Append(':').Append(value).Append(';');
        Field(order.OrderId);
        Field(order.AccountId);
        Field(order.ShippingAddress);
        foreach (var line in mergedLines)
        {
            Field(line.Sku);
            Field(line.Quantity.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Field(line.UnitPrice.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(canonical.ToString())));
    }

    // \z, not $: $ would also match before a trailing newline.
    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._:-]*\\z")]
    private static partial Regex IdPattern();
}
