using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Client.Tests.Infrastructure;

/// <summary>
/// One throwaway PostgreSQL for the "postgres" collection, with the four service databases (schema applied)
/// under the prefix <see cref="Prefix"/>. Tests of the collection run one after another and start from
/// empty grain storage (<see cref="ResetAsync"/>).
/// </summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    public const string Prefix = "clienttests";

    public EmbeddedPostgres Server { get; private set; } = null!;

    public ServiceDatabases Databases { get; private set; } = null!;

    public string AdminConnectionString => Server.AdminConnectionString;

    public async Task InitializeAsync()
    {
        Server = await EmbeddedPostgres.StartNewAsync(logger: NullLogger.Instance);
        Databases = await PostgresTopology.ProvisionOnServerAsync(Server.AdminConnectionString, Prefix);
    }

    public async Task DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        if (Server is not null)
        {
            await Server.DisposeAsync();
        }
    }

    /// <summary>Empties grain storage in all four databases (no silo ever runs here, so membership stays empty).</summary>
    public async Task<ServiceDatabases> ResetAsync()
    {
        foreach (var (_, connectionString) in Databases.All)
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand(
                "DELETE FROM orleansstorage; DELETE FROM twopc_grain_state; DELETE FROM twopc_state_entry", connection);
            await command.ExecuteNonQueryAsync();
        }

        return Databases;
    }
}

[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresFixture>
{
    public const string Name = "postgres";
}
