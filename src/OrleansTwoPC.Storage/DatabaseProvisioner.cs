using System.Text.RegularExpressions;
using Npgsql;

namespace OrleansTwoPC.Storage;

/// <summary>Creates databases on a server if they are missing; safe when several processes race.</summary>
public static partial class DatabaseProvisioner
{
    private const int CreateAttempts = 5;

    /// <summary>
    /// Creates <paramref name="databaseName"/> through an admin connection unless it exists.
    /// Returns true if this call created it.
    /// </summary>
    public static async Task<bool> EnsureDatabaseAsync(
        string adminConnectionString, string databaseName, CancellationToken cancellationToken = default)
    {
        ValidateName(databaseName);

        // No pooling: these one-off admin connections should not linger on the server.
        var admin = new NpgsqlConnectionStringBuilder(adminConnectionString) { Pooling = false }.ConnectionString;
        for (var attempt = 1; ; attempt++)
        {
            await using var connection = new NpgsqlConnection(admin);
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            if (await ExistsAsync(connection, databaseName, cancellationToken).ConfigureAwait(false))
            {
                return false;
            }

            try
            {
                // CREATE DATABASE cannot take parameters; the name was validated above.
                await using var create = new NpgsqlCommand($"CREATE DATABASE \"{databaseName}\"", connection);
                await create.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                return true;
            }
            catch (PostgresException ex) when (ex.SqlState is PostgresErrorCodes.DuplicateDatabase or PostgresErrorCodes.UniqueViolation)
            {
                // Another process created it between our check and our CREATE: that is success.
                return false;
            }
            catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.ObjectInUse && attempt < CreateAttempts)
            {
                // "template1 is being accessed by other users": transient when creations overlap.
                await Task.Delay(200 * attempt, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Makes sure the database a full connection string points at exists. If it does not, the
    /// same credentials are used against <paramref name="maintenanceDatabase"/> to create it, so
    /// no admin rights are needed when the database is already there.
    /// </summary>
    public static async Task<bool> EnsureDatabaseForAsync(
        string connectionString, string maintenanceDatabase = "postgres", CancellationToken cancellationToken = default)
    {
        var probe = new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false }.ConnectionString;
        try
        {
            await using var connection = new NpgsqlConnection(probe);
            await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
            return false;
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.InvalidCatalogName)
        {
            var database = PostgresConnectionStrings.DatabaseOf(connectionString);
            var admin = PostgresConnectionStrings.WithDatabase(connectionString, maintenanceDatabase);
            return await EnsureDatabaseAsync(admin, database, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>True if the name is a plain lower-case identifier we are willing to create.</summary>
    public static bool IsValidName(string databaseName) => DatabaseNamePattern().IsMatch(databaseName);

    private static void ValidateName(string databaseName)
    {
        if (!IsValidName(databaseName))
        {
            throw new ArgumentException(
                $"Database name '{databaseName}' is not allowed: use 1-63 characters of a-z, 0-9 and _, starting with a letter or _.",
                nameof(databaseName));
        }
    }

    private static async Task<bool> ExistsAsync(NpgsqlConnection connection, string databaseName, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT 1 FROM pg_database WHERE datname = @name", connection);
        command.Parameters.AddWithValue("name", databaseName);
        return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is not null;
    }

    [GeneratedRegex("^[a-z_][a-z0-9_]{0,62}$")]
    private static partial Regex DatabaseNamePattern();
}
