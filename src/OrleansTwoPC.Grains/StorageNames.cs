namespace OrleansTwoPC.Grains;

/// <summary>Names of the grain storage providers: each service keeps its state in its own database.</summary>
public static class StorageNames
{
    public const string Inventory = "inventory";
    public const string Payments = "payments";
    public const string Shipping = "shipping";
    public const string Coordinator = "coordinator";
}
