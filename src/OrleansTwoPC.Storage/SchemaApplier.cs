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
            catch (PostgresException ex)
            {
                throw new InvalidOperationException(
                    $"Schema script {script.Name} failed on database '{builder.Database}': {ex.MessageText}", ex);
            }
        }

        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
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
