using System.Reflection;
using Npgsql;

namespace OrleansTwoPC.Storage;

/// <summary>One embedded schema script.</summary>
public sealed record SchemaScript(string Name, string Sql);

/// <summary>
/// Applies the embedded <c>sql/*.sql</c> scripts to a database: in name order, in one
/// transaction, under a transaction-scoped advisory lock. The scripts are idempotent, so this
/// runs on every start; the lock makes silos that start together take turns instead of racing
/// on CREATE TABLE / CREATE OR REPLACE FUNCTION (which can fail when run concurrently).
/// </summary>
public static class SchemaApplier
{
    /// <summary>Advisory lock key shared by every process applying this schema ("2PCSCHEM").</summary>
    public const long AdvisoryLockKey = 0x3250_4353_4348_454D;

    private static readonly Lazy<IReadOnlyList<SchemaScript>> LoadedScripts = new(LoadScripts);

    /// <summary>The embedded scripts, ordered by file name.</summary>
    public static IReadOnlyList<SchemaScript> Scripts => LoadedScripts.Value;

    /// <summary>Applies every script to the database of <paramref name="connectionString"/>.</summary>
    public static async Task ApplyAsync(string connectionString, CancellationToken cancellationToken = default)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false };
        await using var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);

        await using (var lockCommand = new NpgsqlCommand("SELECT pg_advisory_xact_lock(@key)", connection, transaction))
        {
            lockCommand.Parameters.AddWithValue("key", AdvisoryLockKey);
            await lockCommand.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }

        foreach (var script in Scripts)
        {
            await using var command = new NpgsqlCommand(script.Sql, connection, transaction) { CommandTimeout = 120 };
            try
            {
                await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.InsufficientPrivilege)
            {
                throw new PostgresSettingsException(
                    $"Schema script {script.Name} failed on database '{builder.Database}': {ex.MessageText}. User '{builder.Username}' may not change the schema: " +
                    $"provision the databases with an owner's credentials (OrleansTwoPC.Silo provision) and start with {PostgresTopology.ProvisionKey}=false", ex);
            }
            catch (PostgresException ex)
            {
                throw new InvalidOperationException(
                    $"Schema script {script.Name} failed on database '{builder.Database}': {ex.MessageText}", ex);
            }
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Checks, without changing anything, that the database is reachable and carries the schema (its query
    /// table is filled): for a process that may not apply the schema itself. One clear error otherwise.
    /// </summary>
    public static async Task RequireAppliedAsync(string connectionString, CancellationToken cancellationToken = default)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false };
        var where = $"database '{builder.Database}' on {builder.Host}:{builder.Port} as '{builder.Username}'";
        try
        {
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            await using var command = new NpgsqlCommand("SELECT count(*) FROM orleansquery", connection);
            if ((long)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))! == 0)
                throw new PostgresSettingsException($"{where}: the schema's query table is empty; provision the databases first (OrleansTwoPC.Silo provision)");
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UndefinedTable)
        {
            throw new PostgresSettingsException($"{where} has no schema; provision the databases first (OrleansTwoPC.Silo provision)", ex);
        }
        catch (PostgresException ex)
        {
            throw new PostgresSettingsException($"{where}: {ex.MessageText}", ex);
        }
        catch (NpgsqlException ex)
        {
            throw new PostgresSettingsException($"cannot connect to {where}: {ex.GetBaseException().Message}", ex);
        }
    }

    private static IReadOnlyList<SchemaScript> LoadScripts()
    {
        var assembly = typeof(SchemaApplier).Assembly;
        var scripts = assembly.GetManifestResourceNames()
            .Where(name => name.EndsWith(".sql", StringComparison.OrdinalIgnoreCase))
            .Select(name => new SchemaScript(FileNameOf(name), Read(assembly, name)))
            .OrderBy(script => script.Name, StringComparer.Ordinal)
            .ToList();
        if (scripts.Count == 0)
        {
            throw new InvalidOperationException("No sql/*.sql scripts are embedded in OrleansTwoPC.Storage.");
        }

        return scripts;
    }

    /// <summary>"OrleansTwoPC.Storage.sql.010_grain_storage.sql" -> "010_grain_storage.sql".</summary>
    private static string FileNameOf(string resourceName)
    {
        var withoutExtension = resourceName[..^".sql".Length];
        var lastDot = withoutExtension.LastIndexOf('.');
        return (lastDot < 0 ? withoutExtension : withoutExtension[(lastDot + 1)..]) + ".sql";
    }

    private static string Read(Assembly assembly, string resourceName)
    {
        using var stream = assembly.GetManifestResourceStream(resourceName)
            ?? throw new InvalidOperationException($"Embedded resource {resourceName} is missing.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
