namespace OrleansTwoPC.Benchmark.Workloads;

public enum WorkloadKind
{
    /// <summary>Every order picks a SKU and an account uniformly from the whole catalogue; nothing aborts.</summary>
    Uniform,

    /// <summary>Three SKUs take every order (accounts uniform, stock ample): contention on a few participants.</summary>
    Hot,

    /// <summary>30 % of orders are refused: deterministic picks of zero-stock SKUs and zero-balance accounts.</summary>
    AbortHeavy,
}

public static class WorkloadNames
{
    public static string Name(this WorkloadKind kind) => kind switch
    {
        WorkloadKind.Uniform => "uniform",
        WorkloadKind.Hot => "hot",
        WorkloadKind.AbortHeavy => "abort-heavy",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, null),
    };

    public static bool TryParse(string text, out WorkloadKind kind)
    {
        foreach (var candidate in Enum.GetValues<WorkloadKind>())
        {
            if (string.Equals(candidate.Name(), text, StringComparison.OrdinalIgnoreCase))
            {
                kind = candidate;
                return true;
            }
        }
        kind = default;
        return false;
    }
}
