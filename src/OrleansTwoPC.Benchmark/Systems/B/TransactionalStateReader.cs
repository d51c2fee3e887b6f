using System.Text.Json;
using Npgsql;

namespace OrleansTwoPC.Benchmark.Systems.B;

/// <summary>
/// Reads system B's transactional state rows straight from PostgreSQL. Each row is Orleans'
/// <c>TransactionalStateRecord</c> serialized by the provider's default (Newtonsoft) JSON serializer:
/// the committed state, plus pending (prepared, not yet confirmed) states and the commit metadata.
/// </summary>
public sealed class TransactionalStateReader(TransactionalDatabases databases)
{
    /// <summary>Rows still holding prepared states that no confirmation has folded in yet.</summary>
    public async Task<int> CountPendingAsync(CancellationToken cancellationToken)
    {
        var pending = 0;
        foreach (var (connectionString, state) in new[]
                 {
                     (databases.Inventory, TransactionalStorage.StockState),
                     (databases.Payments, TransactionalStorage.AccountState),
                     (databases.Shipping, TransactionalStorage.ShipmentState),
                 })
        {
            await foreach (var (_, record) in ReadRowsAsync(connectionString, state, null, cancellationToken, withPendingOnly: true))
            {
                if (PendingCount(record) > 0) pending++;
            }
        }
        return pending;
    }

    public async Task<StoredSnapshot> ReadAsync(string orderIdPrefix, CancellationToken cancellationToken)
    {
        var stock = new Dictionary<string, long>(StringComparer.Ordinal);
        await foreach (var (key, record) in ReadRowsAsync(databases.Inventory, TransactionalStorage.StockState, null, cancellationToken))
        {
            var committed = Property(record, "CommittedState");
            if (Boolean(committed, "Exists")) stock[key] = Int64(committed, "OnHand");
        }
        var balances = new Dictionary<string, long>(StringComparer.Ordinal);
        await foreach (var (key, record) in ReadRowsAsync(databases.Payments, TransactionalStorage.AccountState, null, cancellationToken))
        {
            var committed = Property(record, "CommittedState");
            if (Boolean(committed, "Exists")) balances[key] = Int64(committed, "Balance");
        }
        var shipped = new HashSet<string>(StringComparer.Ordinal);
        await foreach (var (key, record) in ReadRowsAsync(databases.Shipping, TransactionalStorage.ShipmentState, orderIdPrefix, cancellationToken))
        {
            if (Boolean(Property(record, "CommittedState"), "Exists")) shipped.Add(key);
        }
        return new StoredSnapshot(stock, balances, shipped);
    }

    /// <param name="withPendingOnly">
    /// Only rows whose pending list is not the empty <c>"$values":[]</c> (the record's only list), so polling
    /// does not ship every row to the client; the rows found are still parsed and checked.
    /// </param>
    private static async IAsyncEnumerable<(string Key, JsonElement Record)> ReadRowsAsync(
        string connectionString, string stateName, string? keyPrefix,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken, bool withPendingOnly = false)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            "SELECT grainidextensionstring, payloadbinary FROM orleansstorage WHERE graintypestring = @state AND payloadbinary IS NOT NULL" +
            (keyPrefix is null ? "" : " AND starts_with(grainidextensionstring, @prefix)") +
            (withPendingOnly ? " AND position('\"$values\":[]'::bytea IN payloadbinary) = 0" : ""), connection);
        command.Parameters.AddWithValue("state", stateName);
        if (keyPrefix is not null) command.Parameters.AddWithValue("prefix", keyPrefix);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            using var document = JsonDocument.Parse((byte[])reader.GetValue(1));
            yield return (reader.GetString(0), document.RootElement.Clone());
        }
    }

    private static int PendingCount(JsonElement record)
    {
        var pending = Property(record, "PendingStates");
        // Newtonsoft with type names writes a list as {"$type": ..., "$values": [...]}.
        if (pending.ValueKind == JsonValueKind.Object) pending = Property(pending, "$values");
        return pending.ValueKind == JsonValueKind.Array ? pending.GetArrayLength() : 0;
    }

    private static JsonElement Property(JsonElement element, string name)
    {
        if (element.ValueKind != JsonValueKind.Object) return default;
        foreach (var property in element.EnumerateObject())
        {
            if (string.Equals(property.Name, name, StringComparison.OrdinalIgnoreCase)) return property.Value;
        }
        return default;
    }

    // A value left out of the JSON is the type's default.
    private static bool Boolean(JsonElement element, string name) => Property(element, name) is { ValueKind: JsonValueKind.True };

    private static long Int64(JsonElement element, string name) =>
        Property(element, name) is { ValueKind: JsonValueKind.Number } number ? number.GetInt64() : 0;
}
