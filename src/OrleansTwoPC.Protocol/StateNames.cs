namespace OrleansTwoPC.Protocol;

/// <summary>Grain state names (the storage table's GrainTypeString), shared by the grains and every
/// reader of the database. Each is globally unique: two grain types with one name would share rows.</summary>
public static class StateNames
{
    public const string Inventory = "inventory-sku";
    public const string Payment = "payment-account";
    public const string Shipment = "shipment-order";
    public const string Coordinator = "coordinator-tx";
}
