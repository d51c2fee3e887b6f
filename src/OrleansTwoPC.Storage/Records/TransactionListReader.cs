using System.Text.Json;
using Npgsql;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;

namespace OrleansTwoPC.Storage.Records;

/// <summary>
/// Answers <see cref="TransactionQuery"/> straight from the databases (read-only), for the admin API, the
/// operator page and <c>tpc list</c>.
/// </summary>
/// <remarks>
/// Decided transactions are coordinator records: filtered, counted, sorted and paged in SQL on the JSON
/// payload. In-doubt transactions have no coordinator record yet (presumed abort writes none before the
/// decision), so they are found from the participants' prepared entries (the partial index of sql/040) and
/// merged in memory; there are few of them, each holding a reservation. The merge reads at most
/// <c>Offset + Limit</c> coordinator rows, which <see cref="TransactionQuery.MaxOffset"/> bounds.
/// </remarks>
public sealed class TransactionListReader(ServiceDatabases databases)
{
    // The status of a coordinator record, computed in SQL with the same rules as TransactionStatus.
    private const string StatusSql =
        "CASE WHEN j->>'CompletedAt' IS NULL THEN 'in-flight' WHEN j->>'Decision' = 'Commit' THEN 'committed' ELSE 'aborted' END";

    // Byte patterns of the compact JSON the silo writes (as in StoredStateReader): cheap filters that spare
    // the JSON parse of rows that cannot match; the parsed conditions stay the exact ones.
    private const string CommitBytes = "position('\"Decision\":\"Commit\"'::bytea IN payloadbinary) > 0";
    private const string AbortBytes = "position('\"Decision\":\"Abort\"'::bytea IN payloadbinary) > 0";
    private const string NotCompletedBytes = "position('\"CompletedAt\":null'::bytea IN payloadbinary) > 0";

    /// <summary>
    /// A record is last written (its <c>modifiedon</c>, the database's clock) after it started (the silo's clock),
    /// so a start-time lower bound is also one on <c>modifiedon</c>, less this much for clock skew between them.
    /// </summary>
    public static readonly TimeSpan ClockSkewMargin = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Coordinator records of both grain storages as rows (grain_key, escaped, payloadbinary, modifiedon): Orleans'
    /// ADO.NET table (keys escaped by <see cref="StoredGrainKey"/>) and the batched provider's twopc_grain_state
    /// (keys as given). A deployment writes one of them. Takes the parameter <c>@state</c>.
    /// </summary>
    internal const string CoordinatorRows =
        "(SELECT grainidextensionstring AS grain_key, true AS escaped, payloadbinary, modifiedon FROM orleansstorage " +
        "WHERE graintypestring = @state AND payloadbinary IS NOT NULL AND grainidextensionstring <> '' " +
        "UNION ALL SELECT grain_key, false, payload, modified_on FROM twopc_grain_state WHERE state_name = @state AND payload IS NOT NULL) AS s";

    /// <summary>The id of a row of <see cref="CoordinatorRows"/>.</summary>
    internal static string KeyOf(NpgsqlDataReader reader, int key, int escaped) =>
        reader.GetBoolean(escaped) ? StoredGrainKey.Decode(reader.GetString(key)) : reader.GetString(key);

    private readonly StoredStateReader _states = new(databases);

    public async Task<TransactionPage> ListAsync(TransactionQuery query, CancellationToken cancellationToken = default)
    {
        var inDoubt = query.Status is null or TransactionStatus.InDoubt
            ? (await InDoubtAsync(cancellationToken)).Where(t => Matches(t, query)).ToList()
            : [];
        var (decidedTotal, decided) = query.Status is TransactionStatus.InDoubt
            ? (0L, new List<TransactionSummary>())
            : await DecidedAsync(query, query.Offset + query.Limit, cancellationToken);
        var items = inDoubt.Concat(decided)
            .OrderByDescending(t => t.StartedAt).ThenBy(t => t.TransactionId, StringComparer.Ordinal)
            .Skip(query.Offset).Take(query.Limit).ToList();
        return new TransactionPage(decidedTotal + inDoubt.Count, query.Offset, query.Limit, items);
    }

    /// <summary>Transactions prepared somewhere with no durable decision, oldest preparation first.</summary>
    public async Task<IReadOnlyList<TransactionSummary>> InDoubtAsync(CancellationToken cancellationToken = default)
    {
        var prepared = new List<(string Participant, string Transaction, DateTimeOffset At)>();
        foreach (var row in await _states.InventoryAsync(true, cancellationToken: cancellationToken))
            prepared.AddRange(row.State.Prepared.Select(p => (new ParticipantId(ParticipantKind.Inventory, row.Key).ToString(), p.Key, p.Value.PreparedAt)));
        foreach (var row in await _states.PaymentsAsync(true, cancellationToken: cancellationToken))
            prepared.AddRange(row.State.Prepared.Select(p => (new ParticipantId(ParticipantKind.Payment, row.Key).ToString(), p.Key, p.Value.PreparedAt)));
        foreach (var row in await _states.ShipmentsAsync(true, cancellationToken: cancellationToken))
            prepared.AddRange(row.State.Prepared.Select(p => (new ParticipantId(ParticipantKind.Shipment, row.Key).ToString(), p.Key, p.Value.PreparedAt)));
        if (prepared.Count == 0) return [];

        var decided = await DecidedKeysAsync(prepared.Select(p => p.Transaction).Distinct().ToArray(), cancellationToken);
        return prepared.Where(p => !decided.Contains(p.Transaction))
            .GroupBy(p => p.Transaction)
            .Select(g => new TransactionSummary(g.Key, OrderIdOf(g.Key), TransactionStatuses.Name(TransactionStatus.InDoubt), nameof(Decision.None),
                null, false, g.Min(p => p.At), null, null, g.Select(p => p.Participant).Distinct().Order(StringComparer.Ordinal).ToList()))
            .OrderBy(t => t.StartedAt)
            .ToList();
    }

    private static bool Matches(TransactionSummary t, TransactionQuery query) =>
        (query.Since is not { } since || t.StartedAt >= since)
        && (query.Until is not { } until || t.StartedAt < until)
        && (query.OrderId is null || t.TransactionId == TransactionIdOf(query.OrderId));

    private async Task<(long Total, List<TransactionSummary> Rows)> DecidedAsync(TransactionQuery query, int take, CancellationToken cancellationToken)
    {
        var where = "true" +
                    (query.Status switch
                    {
                        TransactionStatus.Committed => $" AND {CommitBytes} AND NOT {NotCompletedBytes}",
                        TransactionStatus.Aborted => $" AND {AbortBytes} AND NOT {NotCompletedBytes}",
                        TransactionStatus.InFlight => $" AND {NotCompletedBytes}",
                        _ => "",
                    }) +
                    (query.Since is not null ? " AND modifiedon >= @modifiedSince" : "") +
                    (query.OrderId is not null ? " AND grain_key = CASE WHEN escaped THEN @storedKey ELSE @key END" : "");
        var filter = "j->>'Decision' IN ('Commit', 'Abort')" +
                     (query.Status is { } s ? $" AND {StatusSql} = @status" : "") +
                     (query.Since is not null ? " AND (j->>'StartedAt')::timestamptz >= @since" : "") +
                     (query.Until is not null ? " AND (j->>'StartedAt')::timestamptz < @until" : "");
        var sql = "SELECT grain_key, escaped, payloadbinary, count(*) OVER () FROM " +
                  $"(SELECT grain_key, escaped, payloadbinary, convert_from(payloadbinary, 'UTF8')::jsonb AS j FROM {CoordinatorRows} WHERE {where}) r " +
                  $"WHERE {filter} ORDER BY (j->>'StartedAt')::timestamptz DESC, grain_key LIMIT @take";
        await using var connection = new NpgsqlConnection(databases.Coordinator);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.AddWithValue("state", StateNames.Coordinator);
        command.Parameters.AddWithValue("take", take);
        if (query.Status is { } status) command.Parameters.AddWithValue("status", TransactionStatuses.Name(status));
        if (query.Since is { } from)
        {
            command.Parameters.AddWithValue("since", from.UtcDateTime);
            command.Parameters.AddWithValue("modifiedSince", (from - ClockSkewMargin).UtcDateTime);
        }

        if (query.Until is { } to) command.Parameters.AddWithValue("until", to.UtcDateTime);
        if (query.OrderId is { } order)
        {
            command.Parameters.AddWithValue("key", TransactionIdOf(order));
            command.Parameters.AddWithValue("storedKey", StoredGrainKey.Encode(TransactionIdOf(order)));
        }

        var rows = new List<TransactionSummary>();
        long total = 0;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var key = KeyOf(reader, 0, 1);
            var record = JsonSerializer.Deserialize<CoordinatorRecord>((byte[])reader.GetValue(2), StateJson.Options)
                         ?? throw new InvalidDataException($"coordinator {key}: empty state payload");
            total = reader.GetInt64(3);
            rows.Add(Summary(key, record));
        }

        return (total, rows);
    }

    public static TransactionSummary Summary(string key, CoordinatorRecord record) => new(
        key,
        record.Order?.OrderId ?? OrderIdOf(key),
        TransactionStatuses.Name(StatusOf(record)),
        record.Decision.ToString(),
        record.AbortReason,
        record.Heuristic,
        record.StartedAt,
        record.DecidedAt,
        record.CompletedAt,
        record.Participants.Select(p => p.Participant).ToList());

    public static TransactionStatus StatusOf(CoordinatorRecord record) =>
        record.Decision == Decision.None ? TransactionStatus.InDoubt
        : record.CompletedAt is null ? TransactionStatus.InFlight
        : record.Decision == Decision.Commit ? TransactionStatus.Committed
        : TransactionStatus.Aborted;

    /// <summary>Coordinator records with a durable decision among <paramref name="transactionIds"/>.</summary>
    private async Task<HashSet<string>> DecidedKeysAsync(string[] transactionIds, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(databases.Coordinator);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            $"SELECT grain_key, escaped FROM {CoordinatorRows} WHERE grain_key = ANY(CASE WHEN escaped THEN @storedKeys ELSE @keys END) " +
            "AND convert_from(payloadbinary, 'UTF8')::jsonb->>'Decision' IN ('Commit', 'Abort')", connection);
        command.Parameters.AddWithValue("state", StateNames.Coordinator);
        command.Parameters.AddWithValue("keys", transactionIds);
        command.Parameters.AddWithValue("storedKeys", transactionIds.Select(StoredGrainKey.Encode).ToArray());
        var result = new HashSet<string>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken)) result.Add(KeyOf(reader, 0, 1));
        return result;
    }

    // Transaction ids are the order id with this prefix (TransactionIds.FromOrderId); the storage layer does not
    // reference the contracts, so the rule is restated here.
    private const string TransactionPrefix = "tx-";

    private static string TransactionIdOf(string orderOrTransactionId) =>
        orderOrTransactionId.StartsWith(TransactionPrefix, StringComparison.Ordinal) ? orderOrTransactionId : TransactionPrefix + orderOrTransactionId;

    private static string? OrderIdOf(string transactionId) =>
        transactionId.StartsWith(TransactionPrefix, StringComparison.Ordinal) ? transactionId[TransactionPrefix.Length..] : null;
}
