namespace OrleansTwoPC.Benchmark.Systems.B;

// System B's participants: the same three services as A (a SKU's stock, an account's balance, an order's
// shipment), written the way Orleans Transactions are meant to be used. Join-only operations make each
// order one transaction created by the caller; Seed creates its own transaction when called alone.

[Alias("bench.b.IStockGrain")]
public interface IStockGrain : IGrainWithStringKey
{
    [Transaction(TransactionOption.CreateOrJoin)]
    Task Seed(long units);

    /// <summary>Takes units off the shelf; throws <see cref="OrderRefusedException"/> when not enough are left.</summary>
    [Transaction(TransactionOption.Join)]
    Task Reserve(int quantity);
}

[Alias("bench.b.IAccountGrain")]
public interface IAccountGrain : IGrainWithStringKey
{
    [Transaction(TransactionOption.CreateOrJoin)]
    Task Seed(long balance);

    /// <summary>Charges the account; throws <see cref="OrderRefusedException"/> when the balance is short.</summary>
    [Transaction(TransactionOption.Join)]
    Task Debit(long amount);
}

[Alias("bench.b.IShipmentGrain")]
public interface IShipmentGrain : IGrainWithStringKey
{
    /// <summary>Records the order's shipment; an order ships at most once.</summary>
    [Transaction(TransactionOption.Join)]
    Task Create(ShipmentOrder order);
}

[GenerateSerializer, Immutable, Alias("bench.b.ShipmentOrder")]
public sealed record ShipmentOrder(
    [property: Id(0)] string Account,
    [property: Id(1)] string Sku,
    [property: Id(2)] int Quantity,
    [property: Id(3)] long Amount,
    [property: Id(4)] string Address);

/// <summary>The business refusal (stock or funds): thrown inside the transaction, it aborts the whole order.</summary>
[GenerateSerializer, Alias("bench.b.OrderRefusedException")]
public sealed class OrderRefusedException : Exception
{
    public OrderRefusedException(string message) : base(message)
    {
    }
}

// Transactional state. Public settable properties: the ADO.NET provider's default serializer is
// Newtonsoft JSON, which also keeps the rows readable with SQL for the conservation check.

[GenerateSerializer, Alias("bench.b.StockState")]
public sealed class StockState
{
    [Id(0)] public bool Exists { get; set; }
    [Id(1)] public long OnHand { get; set; }
    [Id(2)] public long Sold { get; set; }
}

[GenerateSerializer, Alias("bench.b.AccountState")]
public sealed class AccountState
{
    [Id(0)] public bool Exists { get; set; }
    [Id(1)] public long Balance { get; set; }
    [Id(2)] public long Spent { get; set; }
}

[GenerateSerializer, Alias("bench.b.ShipmentState")]
public sealed class ShipmentState
{
    [Id(0)] public bool Exists { get; set; }
    [Id(1)] public string Account { get; set; } = "";
    [Id(2)] public string Sku { get; set; } = "";
    [Id(3)] public int Quantity { get; set; }
    [Id(4)] public long Amount { get; set; }
    [Id(5)] public string Address { get; set; } = "";
}

/// <summary>Storage providers (one per service database) and state names (the rows' GrainTypeString).</summary>
public static class TransactionalStorage
{
    public const string Inventory = "b-inventory";
    public const string Payments = "b-payments";
    public const string Shipping = "b-shipping";

    public const string StockState = "b-stock";
    public const string AccountState = "b-account";
    public const string ShipmentState = "b-shipment";
}
