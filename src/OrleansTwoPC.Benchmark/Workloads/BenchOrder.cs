namespace OrleansTwoPC.Benchmark.Workloads;

/// <summary>One order of the benchmark: one SKU line, one account, one shipment. Every system gets the same ones.</summary>
public sealed record BenchOrder(string OrderId, string Sku, int Quantity, long UnitPrice, string Account, string Address)
{
    public long Amount => Quantity * UnitPrice;
}
