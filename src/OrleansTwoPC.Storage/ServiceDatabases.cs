namespace OrleansTwoPC.Storage;

/// <summary>
/// Connection strings of the four databases. Each service owns one; the coordinator database
/// also holds Orleans clustering and reminders. Every database carries the full Orleans schema.
/// </summary>
public sealed record ServiceDatabases(string Inventory, string Payments, string Shipping, string Coordinator)
{
    /// <summary>Configuration names, as used under <c>ConnectionStrings:</c>.</summary>
    public static IReadOnlyList<string> Names { get; } = ["Inventory", "Payments", "Shipping", "Coordinator"];

    /// <summary>The four databases by name, in <see cref="Names"/> order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> All =>
    [
        new("Inventory", Inventory),
        new("Payments", Payments),
        new("Shipping", Shipping),
        new("Coordinator", Coordinator),
    ];

    /// <summary>Looks a database up by its configuration name (case-insensitive).</summary>
    public string this[string name] => All.FirstOrDefault(x => string.Equals(x.Key, name, StringComparison.OrdinalIgnoreCase)).Value
        ?? throw new KeyNotFoundException($"No service database named '{name}'. Known: {string.Join(", ", Names)}.");

    /// <summary>
    /// Whether this process holds credentials for the database (a silo started with its own services'
    /// connection strings only leaves the others empty).
    /// </summary>
    public bool Has(string name) => this[name].Length > 0;

    /// <summary>The same databases without those not named (empty): what a process may read of them.</summary>
    public ServiceDatabases Only(IReadOnlyCollection<string> names)
    {
        string Keep(string name, string value) => names.Contains(name, StringComparer.OrdinalIgnoreCase) ? value : "";
        return new ServiceDatabases(Keep("Inventory", Inventory), Keep("Payments", Payments), Keep("Shipping", Shipping), Keep("Coordinator", Coordinator));
    }

    /// <summary>Hides passwords, for logs.</summary>
    public override string ToString() =>
        string.Join("; ", All.Select(x => $"{x.Key}=[{(x.Value.Length == 0 ? "none" : PostgresConnectionStrings.Redact(x.Value))}]"));
}
