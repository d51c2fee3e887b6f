using System.Globalization;
using Microsoft.Extensions.Configuration;
using Npgsql;

namespace OrleansTwoPC.Storage;

/// <summary>
/// PostgreSQL's group commit for the service databases, set per database when they are provisioned:
/// <c>commit_delay</c> (a committing session waits that long before it flushes the WAL, so that commits made
/// meanwhile share the flush) and <c>commit_siblings = 1</c> (only while another transaction is open, so a
/// lone commit does not wait). Each database's batched writer commits one small transaction per batch, and
/// the four writers of a silo usually commit to one server at nearly the same time; without the delay most
/// of those commits flush the WAL on their own.
/// </summary>
/// <remarks>
/// <c>commit_delay</c> may only be set by a superuser (or, from PostgreSQL 15, a login granted SET on it), so
/// a login without that right provisions the databases without it (<see cref="ApplyAsync"/> returns false and
/// the silo logs a warning); an operator can set it with <c>ALTER DATABASE ... SET</c>. 0 leaves whatever the
/// databases have.
/// </remarks>
public static class GroupCommitSettings
{
    /// <summary>Configuration key: microseconds of <c>commit_delay</c> (0 to 100,000; 0 leaves the databases' own setting).</summary>
    public const string CommitDelayKey = "TwoPC:Postgres:CommitDelayMicroseconds";

    public const int DefaultCommitDelayMicroseconds = 500;

    /// <summary>PostgreSQL's own upper bound of <c>commit_delay</c>.</summary>
    public const int MaxCommitDelayMicroseconds = 100_000;

    /// <summary><see cref="CommitDelayKey"/>, or the default when it is not set; anything else is refused.</summary>
    public static int ReadCommitDelay(IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var text = configuration[CommitDelayKey];
        if (string.IsNullOrWhiteSpace(text)) return DefaultCommitDelayMicroseconds;
        if (!int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value > MaxCommitDelayMicroseconds)
            throw new PostgresSettingsException($"{CommitDelayKey} must be a whole number of microseconds from 0 to {MaxCommitDelayMicroseconds}, not '{text}'");
        return value;
    }

    /// <summary>
    /// Sets <c>commit_delay</c> to <paramref name="commitDelayMicroseconds"/> and <c>commit_siblings</c> to 1 on the
    /// database of <paramref name="connectionString"/>, for its sessions started from now on. True when set (or when
    /// the delay is 0 and nothing was to be done); false when the login may not set them (nothing changed).
    /// </summary>
    public static async Task<bool> ApplyAsync(string connectionString, int commitDelayMicroseconds, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(connectionString);
        ArgumentOutOfRangeException.ThrowIfNegative(commitDelayMicroseconds);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(commitDelayMicroseconds, MaxCommitDelayMicroseconds);
        if (commitDelayMicroseconds == 0) return true;

        var builder = new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false };
        await using var connection = new NpgsqlConnection(builder.ConnectionString);
        await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
        string database;
        await using (var name = new NpgsqlCommand("SELECT current_database()", connection))
            database = (string)(await name.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        var quoted = "\"" + database.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
        var wanted = new[] { $"commit_delay={commitDelayMicroseconds.ToString(CultureInfo.InvariantCulture)}", "commit_siblings=1" };
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
        // Silos starting together take turns (two first settings of one database at once collide in the catalog),
        // and one that finds the settings in place writes nothing.
        await using (var turn = new NpgsqlCommand("SELECT pg_advisory_xact_lock(@key)", connection, transaction))
        {
            turn.Parameters.AddWithValue("key", SchemaApplier.AdvisoryLockKey);
            await turn.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        await using (var current = new NpgsqlCommand(
            "SELECT coalesce((SELECT setconfig FROM pg_db_role_setting WHERE setrole = 0 AND setdatabase = (SELECT oid FROM pg_database WHERE datname = current_database())), '{}')",
            connection, transaction))
        {
            var settings = (string[])(await current.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
            if (wanted.All(settings.Contains)) return true;
        }
        // ALTER DATABASE ... SET takes no parameters; the value is an integer checked above.
        await using var alter = new NpgsqlCommand(
            $"ALTER DATABASE {quoted} SET commit_delay = {commitDelayMicroseconds.ToString(CultureInfo.InvariantCulture)}; " +
            $"ALTER DATABASE {quoted} SET commit_siblings = 1", connection, transaction);
        try
        {
            await alter.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.InsufficientPrivilege)
        {
            return false;
        }
        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
        return true;
    }
}
