using OrleansTwoPC.Protocol.Participant;

namespace OrleansTwoPC.Protocol.Resources;

public enum ShipmentStatus
{
    None = 0,
    Confirmed = 1,
    Cancelled = 2,
}

/// <summary>The committed shipment of one order. A tentative one lives only as a prepared transaction.</summary>
public sealed class ShipmentRecord
{
    public ShipmentStatus Status { get; set; }
    public ShipmentDetails? Details { get; set; }
    public string? TransactionId { get; set; }
    public DateTimeOffset? ChangedAt { get; set; }
}

public sealed class ShipmentDetails
{
    public string OrderId { get; set; } = "";
    public string Address { get; set; } = "";
    public List<ShipmentItem> Items { get; set; } = new();
}

public sealed class ShipmentItem
{
    public string Sku { get; set; } = "";
    public int Quantity { get; set; }
}

/// <summary>One shipment per order: prepare holds a tentative record, commit confirms it, rollback cancels it.</summary>
public sealed class ShipmentRules : IResourceRules<ShipmentRecord, ShipmentDetails>
{
    public string? CheckWork(ShipmentDetails work)
    {
        if (string.IsNullOrWhiteSpace(work.Address)) return "shipping address is blank";
        if (work.Items is null || work.Items.Count == 0) return "nothing to ship";
        var skus = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < work.Items.Count; i++)
        {
            var item = work.Items[i];
            if (item is null || string.IsNullOrWhiteSpace(item.Sku)) return $"shipment line {i + 1} has no SKU";
            if (item.Quantity <= 0) return $"shipment line {i + 1} ({item.Sku}): quantity must be positive, got {item.Quantity}";
            if (!skus.Add(item.Sku)) return $"shipment line {i + 1}: SKU {item.Sku} appears twice";
        }
        return null;
    }

    public bool SameWork(ShipmentDetails reserved, ShipmentDetails work) =>
        reserved.OrderId == work.OrderId
        && reserved.Address == work.Address
        && reserved.Items.Count == work.Items.Count
        && reserved.Items.Zip(work.Items).All(p => p.First.Sku == p.Second.Sku && p.First.Quantity == p.Second.Quantity);

    public string? CheckReserve(ShipmentRecord resource, IReadOnlyCollection<ShipmentDetails> reserved, ShipmentDetails work)
    {
        if (resource.Status == ShipmentStatus.Confirmed) return $"shipment already confirmed by {resource.TransactionId}";
        if (reserved.Count > 0) return "another transaction holds a tentative shipment for this order";
        return null;
    }

    public void Apply(ShipmentRecord resource, ShipmentDetails work, string transactionId, DateTimeOffset now)
    {
        resource.Status = ShipmentStatus.Confirmed;
        resource.Details = work;
        resource.TransactionId = transactionId;
        resource.ChangedAt = now;
    }

    public void Release(ShipmentRecord resource, ShipmentDetails work, string transactionId, DateTimeOffset now)
    {
        resource.Status = ShipmentStatus.Cancelled;
        resource.Details = work;
        resource.TransactionId = transactionId;
        resource.ChangedAt = now;
    }

    public ShipmentRecord CopyResource(ShipmentRecord resource) => new()
    {
        Status = resource.Status,
        Details = resource.Details is null ? null : CopyWork(resource.Details),
        TransactionId = resource.TransactionId,
        ChangedAt = resource.ChangedAt,
    };

    public ShipmentDetails CopyWork(ShipmentDetails work) => new()
    {
        OrderId = work.OrderId,
        Address = work.Address,
        Items = work.Items.Select(i => new ShipmentItem { Sku = i.Sku, Quantity = i.Quantity }).ToList(),
    };
}
