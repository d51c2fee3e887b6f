using Npgsql;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Silo.Demo;

/// <summary>
/// Counts durable grain-state writes exactly: every write (insert or compare-and-swap update) adds one to a
/// row's version, so the sum of versions over both grain-state tables (the batched provider's and Orleans'
/// ADO.NET one; a deployment writes one of them) moves by one per write.
/// </summary>
public static class StorageWriteCounter
{
    public static async Task<IReadOnlyDictionary<string, long>> ReadAsync(ServiceDatabases databases)
    {
        var result = new Dictionary<string, long>();
        foreach (var (name, connectionString) in new[]
                 {
                     ("inventory", databases.Inventory), ("payments", databases.Payments),
                     ("shipping", databases.Shipping), ("coordinator", databases.Coordinator),
                 })
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT (SELECT COALESCE(SUM(version), 0) FROM orleansstorage) + (SELECT COALESCE(SUM(version), 0) FROM twopc_grain_state)", connection);
            result[name] = Convert.ToInt64(await command.ExecuteScalarAsync(), System.Globalization.CultureInfo.InvariantCulture);
        }
        return result;
    }

    public static IReadOnlyDictionary<string, long> Delta(IReadOnlyDictionary<string, long> before, IReadOnlyDictionary<string, long> after) =>
        after.ToDictionary(kv => kv.Key, kv => kv.Value - before.GetValueOrDefault(kv.Key));
}
