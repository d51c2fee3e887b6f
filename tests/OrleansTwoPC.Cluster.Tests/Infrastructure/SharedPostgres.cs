using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Cluster.Tests.Infrastructure;

/// <summary>
/// One throwaway PostgreSQL server for the whole test run, started by the tests themselves. Each cluster
/// fixture gets its own fresh set of service databases on it (unique prefix), so fixtures never share state.
/// </summary>
public static class SharedPostgres
{
    private static readonly SemaphoreSlim Gate = new(1, 1);
    private static EmbeddedPostgres? _server;
    private static int _prefixCounter;

    public static async Task<EmbeddedPostgres> ServerAsync()
    {
        await Gate.WaitAsync();
        try
        {
            // The embedded server stops itself when the test process exits.
            // Room for a few cluster fixtures' pools at once (each silo pools per service database).
            return _server ??= await EmbeddedPostgres.StartNewAsync(new EmbeddedPostgresOptions { MaxConnections = 600 });
        }
        finally
        {
            Gate.Release();
        }
    }

    public static async Task<ServiceDatabases> FreshDatabasesAsync(string name)
    {
        var server = await ServerAsync();
        var prefix = $"t{Environment.ProcessId}_{Interlocked.Increment(ref _prefixCounter)}_{name}".ToLowerInvariant();
        return await PostgresTopology.ProvisionOnServerAsync(server.AdminConnectionString, prefix);
    }
}
