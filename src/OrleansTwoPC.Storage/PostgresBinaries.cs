namespace OrleansTwoPC.Storage;

/// <summary>
/// Locates the PostgreSQL server tools (initdb, pg_ctl, postgres). Debian/Ubuntu install them
/// in /usr/lib/postgresql/&lt;version&gt;/bin, which is not on PATH, so that is searched too.
/// </summary>
public sealed record PostgresBinaries(string BinDirectory)
{
    public string InitDb => Path.Combine(BinDirectory, "initdb");

    public string PgCtl => Path.Combine(BinDirectory, "pg_ctl");

    public string Postgres => Path.Combine(BinDirectory, "postgres");

    /// <summary>
    /// Finds the tools: an explicit directory wins, then PATH, then the highest version under
    /// /usr/lib/postgresql (and /usr/local/pgsql/bin).
    /// </summary>
    public static PostgresBinaries Locate(string? binDirectory = null)
    {
        if (!string.IsNullOrWhiteSpace(binDirectory))
        {
            if (!HasTools(binDirectory))
            {
                throw new InvalidOperationException(
                    $"initdb, pg_ctl and postgres were not all found in the configured directory '{binDirectory}'.");
            }

            return new PostgresBinaries(Path.GetFullPath(binDirectory));
        }

        foreach (var candidate in Candidates())
        {
            if (HasTools(candidate))
            {
                return new PostgresBinaries(candidate);
            }
        }

        throw new InvalidOperationException(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH or in /usr/lib/postgresql/*/bin. " +
            "Install them (e.g. apt-get install postgresql) or set ConnectionStrings:PostgresServer to use an existing server.");
    }

    private static IEnumerable<string> Candidates()
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        foreach (var directory in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            yield return directory;
        }

        const string debianRoot = "/usr/lib/postgresql";
        if (Directory.Exists(debianRoot))
        {
            var versions = Directory.GetDirectories(debianRoot)
                .Select(dir => (dir, version: ParseVersion(Path.GetFileName(dir))))
                .Where(x => x.version is not null)
                .OrderByDescending(x => x.version);
            foreach (var (dir, _) in versions)
            {
                yield return Path.Combine(dir, "bin");
            }
        }

        yield return "/usr/local/pgsql/bin";
    }

    private static Version? ParseVersion(string name)
    {
        // Directory names are "15", "16" or older "9.6"; Version needs at least "major.minor".
        var text = name.Contains('.') ? name : name + ".0";
        return Version.TryParse(text, out var version) ? version : null;
    }

    private static bool HasTools(string directory) =>
        File.Exists(Path.Combine(directory, "initdb"))
        && File.Exists(Path.Combine(directory, "pg_ctl"))
        && File.Exists(Path.Combine(directory, "postgres"));
}
