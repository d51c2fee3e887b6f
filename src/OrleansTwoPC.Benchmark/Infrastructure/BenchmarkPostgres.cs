using Microsoft.Extensions.Logging;
using Npgsql;
using OrleansTwoPC.Benchmark.Systems.B;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Benchmark.Infrastructure;

/// <summary>
/// The one PostgreSQL server all systems share: the product's embedded throwaway server (removed on
/// dispose) unless <c>ConnectionStrings:PostgresServer</c> names one, where the benchmark's databases
/// get a unique prefix and are dropped on dispose.
/// </summary>
public sealed class BenchmarkPostgres : IAsyncDisposable
{
    public const string ServerConnectionStringKey = "ConnectionStrings:PostgresServer";

    /// <summary>Connections the systems may open at once: the four pools of 50 (the product's default) of A and of
    /// A-adonet, each kept by its idle silo while the others run, plus B's and C's and headroom.</summary>
    public const int RequiredMaxConnections = 600;

    private readonly List<string> _createdDatabases = [];

    private BenchmarkPostgres(string adminConnectionString, EmbeddedPostgres? embedded, string prefix)
    {
        AdminConnectionString = adminConnectionString;
        Embedded = embedded;
        Prefix = prefix;
    }

    /// <summary>Superuser connection to the server's <c>postgres</c> database.</summary>
    public string AdminConnectionString { get; }

    public EmbeddedPostgres? Embedded { get; }

    /// <summary>Start of every database name this run creates, e.g. <c>bench260101123456</c>.</summary>
    public string Prefix { get; }

    public static async Task<BenchmarkPostgres> StartAsync(string? serverConnectionString, string prefix, ILogger logger, CancellationToken cancellationToken)
    {
        if (!string.IsNullOrWhiteSpace(serverConnectionString))
        {
            var server = new BenchmarkPostgres(serverConnectionString, null, prefix);
            var maxConnections = int.Parse((await server.SettingsAsync(["max_connections"], cancellationToken))[0].Value, System.Globalization.CultureInfo.InvariantCulture);
            if (maxConnections < RequiredMaxConnections)
                throw new InvalidOperationException($"the PostgreSQL server allows {maxConnections} connections; the benchmark needs max_connections >= {RequiredMaxConnections} (A and A-adonet pool up to 200 each)");
            return server;
        }
        // Default settings (fsync on): the product's embedded server only sets port, sockets and max_connections.
        var embedded = await EmbeddedPostgres.StartNewAsync(new EmbeddedPostgresOptions { MaxConnections = RequiredMaxConnections }, logger, cancellationToken);
        return new BenchmarkPostgres(embedded.AdminConnectionString, embedded, prefix);
    }

    /// <summary>A's four service databases with the product's provisioning and schema.</summary>
    public async Task<ServiceDatabases> ProvisionTwoPhaseCommitAsync(string systemPrefix, CancellationToken cancellationToken)
    {
        var databases = PostgresTopology.DeriveDatabases(AdminConnectionString, $"{Prefix}_{systemPrefix}");
        _createdDatabases.AddRange(databases.All.Select(d => PostgresConnectionStrings.DatabaseOf(d.Value)));
        return await PostgresTopology.ProvisionOnServerAsync(AdminConnectionString, $"{Prefix}_{systemPrefix}", cancellationToken);
    }

    /// <summary>B's three service databases, each with the same Orleans schema (sql/) the product applies.</summary>
    public async Task<TransactionalDatabases> ProvisionOrleansTransactionsAsync(string systemPrefix, CancellationToken cancellationToken)
    {
        var names = new[] { "inventory", "payments", "shipping" }.Select(s => $"{Prefix}_{systemPrefix}_{s}").ToArray();
        var connectionStrings = new List<string>();
        foreach (var name in names)
        {
            var connectionString = await CreateDatabaseAsync(name, cancellationToken);
            await SchemaApplier.ApplyAsync(connectionString, cancellationToken);
            connectionStrings.Add(connectionString);
        }
        return new TransactionalDatabases(connectionStrings[0], connectionStrings[1], connectionStrings[2]);
    }

    /// <summary>An empty database (C brings its own schema).</summary>
    public Task<string> ProvisionPlainAsync(string systemPrefix, CancellationToken cancellationToken) =>
        CreateDatabaseAsync($"{Prefix}_{systemPrefix}_orders", cancellationToken);

    public async Task<string> ServerVersionAsync(CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(AdminConnectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("SELECT version()", connection);
        return (string)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// The server's postmaster process id when the server runs on this machine (its data directory's
    /// postmaster.pid is readable here), so its CPU can be read from /proc; null for a remote server.
    /// </summary>
    public async Task<int?> LocalPostmasterPidAsync(CancellationToken cancellationToken)
    {
        string directory;
        try
        {
            directory = (await SettingsAsync(["data_directory"], cancellationToken))[0].Value;
        }
        catch (PostgresException)
        {
            return null; // data_directory is readable by superusers and pg_read_all_settings only
        }
        var pidFile = Path.Combine(directory, "postmaster.pid");
        try
        {
            var first = (await File.ReadAllLinesAsync(pidFile, cancellationToken)).FirstOrDefault();
            return int.TryParse(first, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var pid)
                   && File.Exists($"/proc/{pid}/stat") ? pid : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Values of server settings that matter for the comparison.</summary>
    public async Task<IReadOnlyList<(string Name, string Value)>> SettingsAsync(IEnumerable<string> names, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(AdminConnectionString) { Pooling = false }.ConnectionString);
        await connection.OpenAsync(cancellationToken);
        var result = new List<(string, string)>();
        foreach (var name in names)
        {
            await using var command = new NpgsqlCommand("SELECT current_setting(@name)", connection);
            command.Parameters.AddWithValue("name", name);
            result.Add((name, (string)(await command.ExecuteScalarAsync(cancellationToken))!));
        }
        return result;
    }

    public async ValueTask DisposeAsync()
    {
        // Idle pooled connections would keep the databases (and an embedded server's shutdown) busy.
        NpgsqlConnection.ClearAllPools();
        if (Embedded is not null)
        {
            await Embedded.DisposeAsync();
            return;
        }
        try
        {
            await using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(AdminConnectionString) { Pooling = false }.ConnectionString);
            await connection.OpenAsync();
            foreach (var database in _createdDatabases.Distinct())
            {
                // Names were built from validated parts; WITH (FORCE) ends sessions a stopped silo may have left.
                await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)", connection);
                await drop.ExecuteNonQueryAsync();
            }
        }
        catch (Exception ex)
        {
            Console.Error.WriteLine($"warning: could not drop the benchmark databases ({ex.GetBaseException().Message}); names start with {Prefix}_");
        }
    }

    private async Task<string> CreateDatabaseAsync(string name, CancellationToken cancellationToken)
    {
        _createdDatabases.Add(name);
        await DatabaseProvisioner.EnsureDatabaseAsync(AdminConnectionString, name, cancellationToken);
        return PostgresConnectionStrings.WithDefaultPool(PostgresConnectionStrings.WithDatabase(AdminConnectionString, name));
    }
}
