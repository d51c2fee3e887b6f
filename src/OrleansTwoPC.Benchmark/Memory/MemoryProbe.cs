using System.Diagnostics;
using System.Runtime;
using Microsoft.Extensions.Configuration;
using Orleans.Runtime;
using OrleansTwoPC.Benchmark.Systems.A;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Benchmark.Memory;

/// <summary>
/// Activates idle participants of system A (inventory and payment grains, via GetSnapshot: one state read
/// each, nothing written) in a silo of its own and measures the process after a forced full GC. Runs in a
/// process that hosts nothing else, so the heap is the silo's.
/// </summary>
public static class MemoryProbe
{
    private const int ActivationParallelism = 256;

    public static async Task<MemoryResult> RunAsync(ServiceDatabases databases, IConfiguration configuration, int activations, TextWriter progress, CancellationToken cancellationToken)
    {
        await using var system = new TwoPhaseCommitSystem("A", databases, configuration);
        await system.StartAsync(cancellationToken);
        var grains = system.Grains;
        // The silo's own grains (recovery agent, management) are active before we start.
        var (baselineHeap, baselineWorkingSet, _) = MeasureAfterFullGc();

        var inventory = activations / 2;
        var payments = activations - inventory;
        var clock = Stopwatch.StartNew();
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = ActivationParallelism, CancellationToken = cancellationToken };
        await Parallel.ForEachAsync(Enumerable.Range(0, activations), parallel, async (i, _) =>
        {
            if (i < inventory) await grains.GetGrain<IInventoryGrain>($"idle-sku-{i}").GetSnapshot();
            else await grains.GetGrain<IPaymentAccountGrain>($"idle-acct-{i - inventory}").GetSnapshot();
            if ((i + 1) % 20_000 == 0) progress.WriteLine($"  memory: {i + 1} activations requested");
        });
        var activationSeconds = clock.Elapsed.TotalSeconds;
        var reported = await grains.GetGrain<IManagementGrain>(0).GetTotalActivationCount();
        var (loadedHeap, loadedWorkingSet, liveBytes) = MeasureAfterFullGc();
        return new MemoryResult(activations, inventory, payments, reported, baselineHeap, baselineWorkingSet,
            loadedHeap, loadedWorkingSet, liveBytes, activationSeconds, GCSettings.IsServerGC);
    }

    private static (long GcHeapBytes, long WorkingSetBytes, long LiveBytes) MeasureAfterFullGc()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        GC.WaitForPendingFinalizers();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        var heap = GC.GetGCMemoryInfo(GCKind.FullBlocking).HeapSizeBytes;
        var live = GC.GetTotalMemory(forceFullCollection: false);
        using var process = Process.GetCurrentProcess();
        return (heap, process.WorkingSet64, live);
    }
}
