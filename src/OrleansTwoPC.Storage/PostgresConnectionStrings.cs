using System.Data.Common;
using Npgsql;

namespace OrleansTwoPC.Storage;

/// <summary>Small helpers for Npgsql connection strings.</summary>
public static class PostgresConnectionStrings
{
    /// <summary>Pool size used when the user did not choose one.</summary>
    public const int DefaultMaximumPoolSize = 50;

    private static readonly string[] MaxPoolSizeKeys = ["Maximum Pool Size", "Max Pool Size", "MaxPoolSize", "MaximumPoolSize"];

    /// <summary>The same server and credentials, pointed at another database.</summary>
    public static string WithDatabase(string connectionString, string database) =>
        new NpgsqlConnectionStringBuilder(connectionString) { Database = database }.ConnectionString;

    /// <summary>
    /// Caps the pool at <see cref="DefaultMaximumPoolSize"/> unless the string already sets a
    /// maximum: several silos and providers share one server, and Npgsql's default of 100 per
    /// pool would exhaust max_connections quickly.
    /// </summary>
    public static string WithDefaultPool(string connectionString)
    {
        // The generic builder keeps the user's own keys, so "was it set?" is answerable.
        var raw = new DbConnectionStringBuilder { ConnectionString = connectionString };
        if (MaxPoolSizeKeys.Any(raw.ContainsKey))
        {
            return connectionString;
        }

        return new NpgsqlConnectionStringBuilder(connectionString) { MaxPoolSize = DefaultMaximumPoolSize }.ConnectionString;
    }

    private static readonly string[] NoResetOnCloseKeys = ["No Reset On Close", "NoResetOnClose"];

    /// <summary>
    /// Turns off Npgsql's session reset when a pooled connection is returned, unless the string sets it.
    /// The reset is DISCARD ALL, which also drops every cached plan, so the next call of the storage's
    /// PL/pgSQL write function plans its UPDATE again: on the grain-storage path, where every transaction
    /// step is one such call and nothing ever changes session state, that is pure overhead.
    /// </summary>
    public static string WithoutSessionReset(string connectionString)
    {
        var raw = new DbConnectionStringBuilder { ConnectionString = connectionString };
        if (NoResetOnCloseKeys.Any(raw.ContainsKey))
        {
            return connectionString;
        }

        return new NpgsqlConnectionStringBuilder(connectionString) { NoResetOnClose = true }.ConnectionString;
    }

    /// <summary>The database name a connection string targets (Npgsql defaults it to the user name).</summary>
    public static string DatabaseOf(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        return builder.Database ?? builder.Username
            ?? throw new ArgumentException("The connection string names neither a database nor a user.", nameof(connectionString));
    }

    /// <summary>Connection string with the password hidden, for logs.</summary>
    public static string Redact(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (!string.IsNullOrEmpty(builder.Password))
        {
            builder.Password = "***";
        }

        return builder.ConnectionString;
    }
}
