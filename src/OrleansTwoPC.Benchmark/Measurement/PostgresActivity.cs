using Npgsql;

namespace OrleansTwoPC.Benchmark.Measurement;

/// <summary>Durable work counted by PostgreSQL itself: WAL flushes (server-wide) and rows written (per database).</summary>
public readonly record struct PostgresActivity(long WalSyncs, long WalBytes, long RowsWritten, long TransactionsCommitted)
{
    public static PostgresActivity operator -(PostgresActivity after, PostgresActivity before) =>
        new(after.WalSyncs - before.WalSyncs, after.WalBytes - before.WalBytes, after.RowsWritten - before.RowsWritten,
            after.TransactionsCommitted - before.TransactionsCommitted);

    /// <summary>
    /// Reads pg_stat_wal on the server, and over <paramref name="databases"/> the sum of inserted, updated and
    /// deleted rows of pg_stat_user_tables and of committed transactions (pg_stat_database.xact_commit; the
    /// reading's own few transactions are in it too). Backends publish their counters
    /// asynchronously (PostgreSQL 15: at most about a second late), so callers wait before reading.
    /// </summary>
    public static async Task<PostgresActivity> ReadAsync(string serverConnectionString, IEnumerable<string> databases, CancellationToken cancellationToken)
    {
        long walSyncs, walBytes;
        await using (var connection = await OpenUnpooledAsync(serverConnectionString, cancellationToken))
        {
            await ClearSnapshotAsync(connection, cancellationToken);
            await using var command = new NpgsqlCommand("SELECT wal_sync, wal_bytes::bigint FROM pg_stat_wal", connection);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            walSyncs = reader.GetInt64(0);
            walBytes = reader.GetInt64(1);
        }

        long rows = 0, commits = 0;
        foreach (var database in databases)
        {
            await using var connection = await OpenUnpooledAsync(database, cancellationToken);
            await ClearSnapshotAsync(connection, cancellationToken);
            await using (var command = new NpgsqlCommand(
                "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint FROM pg_stat_user_tables", connection))
                rows += (long)(await command.ExecuteScalarAsync(cancellationToken))!;
            await using (var command = new NpgsqlCommand("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()", connection))
                commits += (long)(await command.ExecuteScalarAsync(cancellationToken))!;
        }
        return new PostgresActivity(walSyncs, walBytes, rows, commits);
    }

    // Statistics connections stay out of the systems' pools and close right away.
    private static async Task<NpgsqlConnection> OpenUnpooledAsync(string connectionString, CancellationToken cancellationToken)
    {
        var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    private static async Task ClearSnapshotAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT pg_stat_clear_snapshot()", connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }
}
