namespace OrleansTwoPC.Benchmark.Workloads;

/// <summary>
/// A deterministic, endless sequence of orders: order n depends only on (seed, n), never on timing, so the
/// systems of one round see exactly the same orders in the same sequence whatever their speed.
/// </summary>
public sealed class OrderStream(Catalogue catalogue, WorkloadKind workload, ulong seed, string orderIdPrefix)
{
    /// <summary>Abort-heavy: of every 20 orders, 3 ask a zero-stock SKU and 3 charge a zero-balance account.</summary>
    public const int AbortCycle = 20;
    public const int NoStockSlots = 3;
    public const int NoFundsSlots = 3;

    private long _issued = -1;

    public string OrderIdPrefix => orderIdPrefix;

    /// <summary>Thread-safe: callers share one stream.</summary>
    public BenchOrder Next() => Create(Interlocked.Increment(ref _issued));

    public BenchOrder Create(long n)
    {
        var random = new SplitMix64(seed ^ (ulong)n * 0x9E3779B97F4A7C15UL);
        string sku, account;
        switch (workload)
        {
            case WorkloadKind.Uniform:
                sku = Pick(catalogue.UniformSkus, ref random);
                account = Pick(catalogue.UniformAccounts, ref random);
                break;
            case WorkloadKind.Hot:
                sku = Pick(catalogue.HotSkus, ref random);
                account = Pick(catalogue.UniformAccounts, ref random);
                break;
            case WorkloadKind.AbortHeavy:
                var slot = (int)(n % AbortCycle);
                sku = slot < NoStockSlots ? Pick(catalogue.EmptySkus, ref random) : Pick(catalogue.UniformSkus, ref random);
                account = slot >= NoStockSlots && slot < NoStockSlots + NoFundsSlots
                    ? Pick(catalogue.PoorAccounts, ref random)
                    : Pick(catalogue.UniformAccounts, ref random);
                break;
            default:
                throw new InvalidOperationException($"unknown workload {workload}");
        }
        var quantity = 1 + (int)random.Below(3);
        return new BenchOrder($"{orderIdPrefix}{n:000000}", sku, quantity, Catalogue.UnitPrice(sku), account, $"{n % 997 + 1} Benchmark Road");
    }

    private static string Pick(IReadOnlyList<string> items, ref SplitMix64 random) => items[(int)random.Below((ulong)items.Count)];

    /// <summary>SplitMix64: tiny, fast and identical on every platform and .NET version.</summary>
    private struct SplitMix64(ulong state)
    {
        private ulong _state = state;

        public ulong Below(ulong bound)
        {
            _state += 0x9E3779B97F4A7C15UL;
            var z = _state;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
            return (z ^ (z >> 31)) % bound;
        }
    }
}
