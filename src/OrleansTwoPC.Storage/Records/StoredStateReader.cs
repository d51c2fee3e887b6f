using System.Text.Json;
using Npgsql;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Batching;

namespace OrleansTwoPC.Storage.Records;

/// <summary>One grain's durable state as read from its service database.</summary>
public sealed record StoredState<T>(string Key, T State, int Version, DateTimeOffset ModifiedOn);

/// <summary>
/// Reads grain state straight from the service databases, bypassing Orleans: for recovery sweeps,
/// operators and the invariant checker. Read-only.
/// </summary>
public sealed class StoredStateReader(ServiceDatabases databases)
{
    // Byte patterns of the JSON the silo writes (on the given payload column); the partial indexes in sql/040 use the
    // same ones. A participant record of the batched provider holds its prepared transactions in entry rows (sql/060);
    // the pattern still finds one stored in one row before records were split.
    private static readonly Filter HasPreparedFilter = new(column => $"position('\"Prepared\":{{\"'::bytea IN {column}) > 0", StateLayouts.PreparedPrefix, false);
    // Batched rows carry the open flag (sql/070, indexed); a row without one (an older writer) is judged by its payload.
    private static readonly Filter NotCompletedFilter = new(column => $"position('\"CompletedAt\":null'::bytea IN {column}) > 0", null, true);

    public ServiceDatabases Databases => databases;

    public Task<IReadOnlyList<StoredState<CoordinatorRecord>>> CoordinatorsAsync(bool unfinishedOnly, CancellationToken cancellationToken = default) =>
        ReadAsync<CoordinatorRecord>(databases.Coordinator, StateNames.Coordinator, unfinishedOnly ? NotCompletedFilter : null, null, cancellationToken);

    public Task<IReadOnlyList<StoredState<CoordinatorRecord>>> CoordinatorAsync(string transactionId, CancellationToken cancellationToken = default) =>
        ReadAsync<CoordinatorRecord>(databases.Coordinator, StateNames.Coordinator, null, transactionId, cancellationToken);

    public Task<IReadOnlyList<StoredState<ParticipantRecord<EscrowCounter, long>>>> InventoryAsync(bool withPreparedOnly, string? key = null, CancellationToken cancellationToken = default) =>
        ReadAsync<ParticipantRecord<EscrowCounter, long>>(databases.Inventory, StateNames.Inventory, withPreparedOnly ? HasPreparedFilter : null, key, cancellationToken);

    public Task<IReadOnlyList<StoredState<ParticipantRecord<EscrowCounter, long>>>> PaymentsAsync(bool withPreparedOnly, string? key = null, CancellationToken cancellationToken = default) =>
        ReadAsync<ParticipantRecord<EscrowCounter, long>>(databases.Payments, StateNames.Payment, withPreparedOnly ? HasPreparedFilter : null, key, cancellationToken);

    public Task<IReadOnlyList<StoredState<ParticipantRecord<ShipmentRecord, ShipmentDetails>>>> ShipmentsAsync(bool withPreparedOnly, string? key = null, CancellationToken cancellationToken = default) =>
        ReadAsync<ParticipantRecord<ShipmentRecord, ShipmentDetails>>(databases.Shipping, StateNames.Shipment, withPreparedOnly ? HasPreparedFilter : null, key, cancellationToken);

    /// <summary>Participants whose record mentions a transaction (prepared or remembered as decided). A
    /// sequential scan: for operators' one-off lookups, not for hot paths.</summary>
    public async Task<IReadOnlyList<(ParticipantId Participant, string Key)>> ParticipantsMentioningAsync(string transactionId, CancellationToken cancellationToken = default)
    {
        var result = new List<(ParticipantId, string)>();
        foreach (var kind in new[] { ParticipantKind.Inventory, ParticipantKind.Payment, ParticipantKind.Shipment })
            result.AddRange(await ParticipantsMentioningAsync(transactionId, kind, cancellationToken));
        return result;
    }

    /// <summary>As above, of one service only.</summary>
    public async Task<IReadOnlyList<(ParticipantId Participant, string Key)>> ParticipantsMentioningAsync(string transactionId, ParticipantKind only, CancellationToken cancellationToken = default)
    {
        var mention = "\"" + transactionId + "\":";
        string[] entryKeys = [StateLayouts.PreparedPrefix + transactionId, StateLayouts.DecidedPrefix + transactionId];
        var result = new List<(ParticipantId, string)>();
        foreach (var (kind, connectionString, state) in new[]
                 {
                     (ParticipantKind.Inventory, databases.Inventory, StateNames.Inventory),
                     (ParticipantKind.Payment, databases.Payments, StateNames.Payment),
                     (ParticipantKind.Shipment, databases.Shipping, StateNames.Shipment),
                 }.Where(x => x.Item1 == only))
        {
            var rows = await ReadAsync<System.Text.Json.JsonElement>(connectionString, state, null, null, cancellationToken, (mention, entryKeys));
            result.AddRange(rows.Select(r => (new ParticipantId(kind, r.Key), r.Key)));
        }
        return result;
    }

    /// <summary>
    /// Rows written before ids were stored as exact strings whose key Orleans had turned into a number or
    /// GUID (a numeric or hexadecimal id): no grain reads them any more. Counted per service database so
    /// the checker and operators can see them; see docs/operations.md for what to do with them.
    /// </summary>
    public async Task<IReadOnlyList<(string Service, long Rows)>> LegacyNumericKeyRowsAsync(CancellationToken cancellationToken = default)
    {
        var result = new List<(string, long)>();
        foreach (var (service, connectionString) in new[]
                 {
                     ("inventory", databases.Inventory), ("payments", databases.Payments),
                     ("shipping", databases.Shipping), ("coordinator", databases.Coordinator),
                 }.Where(x => x.Item2.Length > 0))
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync(cancellationToken);
            await using var command = new NpgsqlCommand(
                "SELECT count(*) FROM orleansstorage WHERE graintypestring = ANY(@states) AND grainidextensionstring = ''", connection);
            command.Parameters.AddWithValue("states", new[] { StateNames.Inventory, StateNames.Payment, StateNames.Shipment, StateNames.Coordinator });
            var rows = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
            if (rows > 0) result.Add((service, rows));
        }
        return result;
    }

    /// <summary>
    /// Reads once more, on fresh connections, when the first attempt failed on a broken connection: after a
    /// database restart every idle pooled connection is dead, and only using one finds out. Reads are
    /// idempotent, so the retry is safe.
    /// </summary>
    private static async Task<IReadOnlyList<StoredState<T>>> ReadAsync<T>(string connectionString, string stateName, Filter? filter, string? key, CancellationToken cancellationToken, (string Pattern, string[] EntryKeys)? mentions = null)
    {
        // An empty connection string: this process was given no credentials for that service's database.
        if (connectionString.Length == 0)
            throw new InvalidOperationException($"this process holds no credentials for the database of {stateName}");
        try
        {
            return await ReadOnceAsync<T>(connectionString, stateName, filter, key, cancellationToken, mentions);
        }
        catch (NpgsqlException ex) when (ex.IsTransient && !cancellationToken.IsCancellationRequested)
        {
            using (var pooled = new NpgsqlConnection(connectionString)) NpgsqlConnection.ClearPool(pooled);
            return await ReadOnceAsync<T>(connectionString, stateName, filter, key, cancellationToken, mentions);
        }
    }

    private static async Task<IReadOnlyList<StoredState<T>>> ReadOnceAsync<T>(string connectionString, string stateName, Filter? filter, string? key, CancellationToken cancellationToken, (string Pattern, string[] EntryKeys)? mentions)
    {
        // Both grain storages are read: Orleans' ADO.NET table (the default provider) and twopc_grain_state (the
        // batched provider, sql/050) with its entry rows (sql/060), joined back into whole records; a deployment
        // writes one of them. Rows with an empty extension string were keyed by a number under the old key mapping
        // (see StoredGrainKey): their key is lost and possibly shared, so they belong to no id and are left out. The
        // batched table holds keys exactly as given. One statement, so a head and its entries come from one snapshot.
        const string EntriesOf = "FROM twopc_state_entry AS x WHERE x.state_name = s.state_name AND x.grain_key = s.grain_key";
        const string EntryArrays = "LEFT JOIN LATERAL (" + BatchedStateWriter.EntryArraysOfHead + ") AS e ON true ";
        var sql = "SELECT grainidextensionstring, true, payloadbinary, version, modifiedon, NULL::text[], NULL::bytea[] FROM orleansstorage " +
                  "WHERE graintypestring = @state AND grainidextensionstring <> '' AND payloadbinary IS NOT NULL" +
                  (key is null ? "" : " AND grainidextensionstring = @storedKey") +
                  (filter is null ? "" : " AND " + filter.OnPayload("payloadbinary")) +
                  (mentions is null ? "" : " AND position(@mentions IN payloadbinary) > 0") +
                  " UNION ALL " +
                  "SELECT s.grain_key, false, s.payload, s.version, s.modified_on, e.keys, e.payloads FROM twopc_grain_state AS s " +
                  EntryArrays +
                  "WHERE s.state_name = @state AND s.payload IS NOT NULL" +
                  (key is null ? "" : " AND s.grain_key = @key") +
                  (filter is null ? "" : filter.ByOpenFlag
                      ? " AND (s.open OR (s.open IS NULL AND " + filter.OnPayload("s.payload") + "))"
                      : " AND (" + filter.OnPayload("s.payload") +
                        (filter.EntryPrefix is null ? "" : " OR EXISTS (SELECT 1 " + EntriesOf + " AND starts_with(x.entry_key, @entryPrefix))") + ")") +
                  (mentions is null ? "" : " AND (position(@mentions IN s.payload) > 0 OR EXISTS (SELECT 1 " + EntriesOf + " AND x.entry_key = ANY(@entryKeys)))");
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.AddWithValue("state", stateName);
        if (key is not null)
        {
            command.Parameters.AddWithValue("storedKey", StoredGrainKey.Encode(key));
            command.Parameters.AddWithValue("key", key);
        }
        if (filter?.EntryPrefix is { } prefix) command.Parameters.AddWithValue("entryPrefix", prefix);
        if (mentions is { } mention)
        {
            command.Parameters.AddWithValue("mentions", System.Text.Encoding.UTF8.GetBytes(mention.Pattern));
            command.Parameters.AddWithValue("entryKeys", mention.EntryKeys);
        }
        var result = new List<StoredState<T>>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var grainKey = reader.GetBoolean(1) ? StoredGrainKey.Decode(reader.GetString(0)) : reader.GetString(0);
            var payload = (byte[])reader.GetValue(2);
            if (!reader.IsDBNull(5)) payload = StateLayouts.Join(payload, BatchedStateWriter.EntriesOf(reader, 5));
            var state = JsonSerializer.Deserialize<T>(payload, StateJson.Options)
                        ?? throw new InvalidDataException($"{stateName} {grainKey}: empty state payload");
            result.Add(new StoredState<T>(grainKey, state, reader.GetInt32(3), reader.GetFieldValue<DateTimeOffset>(4)));
        }
        return result;
    }

    /// <summary>A condition on a payload column, or for split records on the keys of their entry rows, or for batched rows on their open flag.</summary>
    private sealed record Filter(Func<string, string> OnPayload, string? EntryPrefix, bool ByOpenFlag);
}
