using Microsoft.Extensions.Logging.Abstractions;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>
/// One throwaway PostgreSQL server shared by the tests of the "postgres" collection, with the
/// four service databases provisioned under a run-unique prefix.
/// </summary>
public sealed class PostgresFixture : IAsyncLifetime
{
    public EmbeddedPostgres Server { get; private set; } = null!;

    public ServiceDatabases Databases { get; private set; } = null!;

    public async Task InitializeAsync()
    {
        Server = await EmbeddedPostgres.StartNewAsync(logger: NullLogger.Instance);
        Databases = await PostgresTopology.ProvisionOnServerAsync(Server.AdminConnectionString, "fixture");
    }

    public async Task DisposeAsync()
    {
        if (Server is not null)
        {
            await Server.DisposeAsync();
        }
    }

    /// <summary>A new, schema-applied database on the shared server, for tests that need isolation.</summary>
    public async Task<string> CreateDatabaseAsync(string name)
    {
        await DatabaseProvisioner.EnsureDatabaseAsync(Server.AdminConnectionString, name);
        var connectionString = Server.ConnectionStringFor(name);
        await SchemaApplier.ApplyAsync(connectionString);
        return connectionString;
    }
}

[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresFixture>
{
    public const string Name = "postgres";
}
