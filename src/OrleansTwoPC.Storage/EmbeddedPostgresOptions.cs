namespace OrleansTwoPC.Storage;

/// <summary>Settings for <see cref="EmbeddedPostgres"/>. The defaults suit tests and local runs.</summary>
public sealed class EmbeddedPostgresOptions
{
    /// <summary>
    /// Data directory to use. Null: a fresh directory under the system temp folder. An existing,
    /// already initialised directory is reused as is (no initdb).
    /// </summary>
    public string? DataDirectory { get; set; }

    /// <summary>
    /// Delete the data directory on dispose. Defaults to true for a temp directory and false for
    /// a directory the caller gave, when left null.
    /// </summary>
    public bool? DeleteDataOnDispose { get; set; }

    /// <summary>TCP port on 127.0.0.1. Null: a free port is picked once and kept across restarts.</summary>
    public int? Port { get; set; }

    /// <summary>Directory holding initdb/pg_ctl/postgres. Null: searched (see <see cref="PostgresBinaries"/>).</summary>
    public string? BinDirectory { get; set; }

    /// <summary>Many connection pools (silos x providers x services) share one server.</summary>
    public int MaxConnections { get; set; } = 300;

    /// <summary>How long start-up may take before it is reported as failed.</summary>
    public TimeSpan StartTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Extra postgresql.conf settings (name to raw value, quoted as PostgreSQL expects).</summary>
    public IDictionary<string, string> ServerSettings { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
}
