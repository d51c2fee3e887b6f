namespace OrleansTwoPC.Grains.Placement;

/// <summary>
/// The service roles a silo can host. A silo started for "payment" only activates payment-account grains
/// (and the grains every silo may run), so stopping it is an outage of the payment service alone.
/// </summary>
public static class ServiceRoles
{
    /// <summary>Configuration key of a silo's roles: "all" (the default) or e.g. "payment" or "coordinator,shipping".</summary>
    public const string ConfigurationKey = "TwoPC:Roles";

    public const string Coordinator = "coordinator";
    public const string Inventory = "inventory";
    public const string Payment = "payment";
    public const string Shipping = "shipping";
    public const string All = "all";

    /// <summary>Silo metadata key carrying the comma-separated roles of a silo.</summary>
    public const string MetadataKey = "twopc.roles";

    public static readonly IReadOnlyList<string> Every = [Coordinator, Inventory, Payment, Shipping];

    /// <summary>
    /// Parses a roles setting ("all", or a comma-separated list of roles) into its canonical form
    /// ("coordinator,inventory"). Unknown names are an error, so a typo cannot leave a role without silos.
    /// </summary>
    public static string Normalize(string? roles)
    {
        if (string.IsNullOrWhiteSpace(roles)) return All;
        var names = roles.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(r => r.ToLowerInvariant())
            .ToList();
        if (names.Count == 0 || names.Contains(All)) return All;
        var unknown = names.Where(n => !Every.Contains(n)).ToList();
        if (unknown.Count > 0)
            throw new ArgumentException($"unknown silo role(s) {string.Join(", ", unknown.Select(u => $"'{u}'"))}: expected all or a comma-separated list of {string.Join(", ", Every)}");
        var ordered = Every.Where(names.Contains).ToList();
        return ordered.Count == Every.Count ? All : string.Join(',', ordered);
    }

    /// <summary>Whether a silo whose metadata says <paramref name="siloRoles"/> may host <paramref name="role"/>.</summary>
    public static bool Hosts(string? siloRoles, string role)
    {
        // Unknown (metadata not fetched yet, or a silo that publishes none) hosts nothing: placing a grain
        // on a silo of the wrong service would break the service boundary; waiting a moment does not.
        if (string.IsNullOrWhiteSpace(siloRoles)) return false;
        if (siloRoles == All) return true;
        foreach (var r in siloRoles.Split(',', StringSplitOptions.TrimEntries))
            if (r == role) return true;
        return false;
    }
}
