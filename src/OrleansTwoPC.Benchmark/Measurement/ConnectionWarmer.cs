using Npgsql;

namespace OrleansTwoPC.Benchmark.Measurement;

/// <summary>
/// Fills a system's connection pools before a run. Every run ends by closing all pooled connections (that is
/// how PostgreSQL is made to publish their statistics), and a new backend costs a fork and cache loading:
/// without this, each run would start by paying for dozens of connections inside its own warm-up.
/// </summary>
public static class ConnectionWarmer
{
    /// <summary>Opens up to <paramref name="connectionsPerPool"/> connections of each pool at once (capped at the
    /// pool's size), runs a read on each, and returns them to their pool open. Writes nothing.</summary>
    public static async Task WarmAsync(IEnumerable<string> pooledConnectionStrings, int connectionsPerPool, CancellationToken cancellationToken)
    {
        foreach (var connectionString in pooledConnectionStrings)
        {
            var count = Math.Min(connectionsPerPool, new NpgsqlConnectionStringBuilder(connectionString).MaxPoolSize);
            var opened = new List<NpgsqlConnection>();
            try
            {
                // All held at once, so the pool must create that many distinct connections.
                await Task.WhenAll(Enumerable.Range(0, count).Select(async _ =>
                {
                    var connection = new NpgsqlConnection(connectionString);
                    lock (opened) opened.Add(connection);
                    await connection.OpenAsync(cancellationToken);
                    await using var command = new NpgsqlCommand("SELECT 1", connection);
                    await command.ExecuteScalarAsync(cancellationToken);
                }));
            }
            finally
            {
                foreach (var connection in opened) await connection.DisposeAsync();
            }
        }
    }
}
