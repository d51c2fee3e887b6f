using Npgsql;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Silo.Demo;

/// <summary>
/// Counts durable grain-state writes exactly: every write (insert or compare-and-swap update, each its
/// own committed PostgreSQL transaction) adds one to a row's Version, so the sum of versions over the
/// storage table moves by one per write.
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
            await using var command = new NpgsqlCommand("SELECT COALESCE(SUM(version), 0)::bigint FROM orleansstorage", connection);
            result[name] = (long)(await command.ExecuteScalarAsync())!;
        }
        return result;
    }

    public static IReadOnlyDictionary<string, long> Delta(IReadOnlyDictionary<string, long> before, IReadOnlyDictionary<string, long> after) =>
        after.ToDictionary(kv => kv.Key, kv => kv.Value - before.GetValueOrDefault(kv.Key));
}
