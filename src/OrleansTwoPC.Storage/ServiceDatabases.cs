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

    /// <summary>Hides passwords, for logs.</summary>
    public override string ToString() =>
        string.Join("; ", All.Select(x => $"{x.Key}=[{PostgresConnectionStrings.Redact(x.Value)}]"));
}
