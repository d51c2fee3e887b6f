namespace OrleansTwoPC.Benchmark.Memory;

/// <summary>Memory of a silo of system A before and after activating idle participants, each after a full blocking GC.</summary>
public sealed record MemoryResult(
    int RequestedActivations,
    int InventoryActivations,
    int PaymentActivations,
    int ActivationCountReportedByOrleans,
    long BaselineGcHeapBytes,
    long BaselineWorkingSetBytes,
    long LoadedGcHeapBytes,
    long LoadedWorkingSetBytes,
    long LoadedLiveObjectBytes,
    double ActivationSeconds,
    bool ServerGc)
{
    public double GcHeapBytesPerActivation => (LoadedGcHeapBytes - BaselineGcHeapBytes) / (double)Math.Max(1, RequestedActivations);
    public double WorkingSetBytesPerActivation => (LoadedWorkingSetBytes - BaselineWorkingSetBytes) / (double)Math.Max(1, RequestedActivations);
}
