using System.Globalization;

namespace OrleansTwoPC.Benchmark.Workloads;

/// <summary>
/// The SKUs and accounts every system is seeded with, identically. One catalogue serves all workloads:
/// uniform orders draw from the large SKU and account ranges, hot orders from three SKUs, and the refused
/// part of abort-heavy orders from SKUs seeded with zero stock and accounts seeded with zero balance.
/// </summary>
public sealed class Catalogue
{
    /// <summary>Far more than any run can sell: "ample" never becomes a reason to abort.</summary>
    public const long AmpleStock = 1_000_000_000;

    /// <summary>Minor units; orders cost at most 3 x 4,999.</summary>
    public const long AmpleBalance = 1_000_000_000_000;

    public const int HotSkuCount = 3;
    public const int EmptySkuCount = 100;
    public const int PoorAccountCount = 100;

    public Catalogue(int skuCount, int accountCount)
    {
        if (skuCount < 1) throw new ArgumentOutOfRangeException(nameof(skuCount));
        if (accountCount < 1) throw new ArgumentOutOfRangeException(nameof(accountCount));
        UniformSkus = Names("sku", skuCount);
        HotSkus = Names("hot", HotSkuCount);
        EmptySkus = Names("empty", EmptySkuCount);
        UniformAccounts = Names("acct", accountCount);
        PoorAccounts = Names("poor", PoorAccountCount);

        var stock = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var sku in UniformSkus.Concat(HotSkus)) stock[sku] = AmpleStock;
        foreach (var sku in EmptySkus) stock[sku] = 0;
        SeededStock = stock;

        var balances = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var account in UniformAccounts) balances[account] = AmpleBalance;
        foreach (var account in PoorAccounts) balances[account] = 0;
        SeededBalances = balances;
    }

    public IReadOnlyList<string> UniformSkus { get; }
    public IReadOnlyList<string> HotSkus { get; }
    public IReadOnlyList<string> EmptySkus { get; }
    public IReadOnlyList<string> UniformAccounts { get; }
    public IReadOnlyList<string> PoorAccounts { get; }

    /// <summary>Units on hand per SKU right after seeding.</summary>
    public IReadOnlyDictionary<string, long> SeededStock { get; }

    /// <summary>Balance per account right after seeding.</summary>
    public IReadOnlyDictionary<string, long> SeededBalances { get; }

    /// <summary>A fixed price per SKU (100 to 4,999 minor units), so repeated orders of a SKU agree.</summary>
    public static long UnitPrice(string sku)
    {
        // FNV-1a: stable across processes, unlike string.GetHashCode.
        var hash = 2166136261u;
        foreach (var c in sku) hash = (hash ^ c) * 16777619u;
        return 100 + hash % 4900;
    }

    // Letters before the number: Orleans would store an all-digit key as an integer.
    private static IReadOnlyList<string> Names(string prefix, int count)
    {
        var width = Math.Max(3, count.ToString(CultureInfo.InvariantCulture).Length);
        return Enumerable.Range(1, count).Select(i => $"{prefix}-{i.ToString(CultureInfo.InvariantCulture).PadLeft(width, '0')}").ToList();
    }
}
