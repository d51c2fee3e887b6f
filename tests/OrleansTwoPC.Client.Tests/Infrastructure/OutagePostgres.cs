using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Client.Tests.Infrastructure;

/// <summary>
/// A PostgreSQL server of one test alone, which it may crash (<c>pg_ctl stop -m immediate</c>: no checkpoint,
/// every connection cut) and start again on the same data directory and port.
/// </summary>
public sealed class OutagePostgres : IAsyncDisposable
{
    private OutagePostgres(EmbeddedPostgres server) => Server = server;

    public EmbeddedPostgres Server { get; }

    public string AdminConnectionString => Server.AdminConnectionString;

    public static async Task<OutagePostgres> StartAsync() =>
        new(await EmbeddedPostgres.StartNewAsync(logger: NullLogger.Instance));

    /// <summary>Immediate shutdown, as in a crash of the database server.</summary>
    public async Task CrashAsync()
    {
        // The server runs as the postgres user when the tests run as root, and so must pg_ctl.
        var pgCtl = PostgresBinaries.Locate().PgCtl;
        var start = Environment.UserName == "root" ? new ProcessStartInfo("runuser") : new ProcessStartInfo(pgCtl);
        if (Environment.UserName == "root")
        {
            foreach (var argument in new[] { "-u", "postgres", "--", pgCtl }) start.ArgumentList.Add(argument);
        }

        foreach (var argument in new[] { "stop", "-D", Server.DataDirectory, "-m", "immediate", "-w", "-t", "30", "-s" }) start.ArgumentList.Add(argument);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start pg_ctl");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(40));
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"pg_ctl stop -m immediate failed (exit {process.ExitCode}): {await output}{await error}");
        }
    }

    /// <summary>Starts the crashed server again on the same data directory and port (crash recovery runs).</summary>
    public async Task RestartAsync()
    {
        // The server object still believes it runs: its stop finds no postmaster and only resets that.
        await Server.StopAsync();
        await Server.StartAsync();
    }

    public async ValueTask DisposeAsync()
    {
        NpgsqlConnection.ClearAllPools();
        await Server.DisposeAsync();
    }
}
