using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace OrleansTwoPC.Storage;

/// <summary>
/// A throwaway PostgreSQL server for tests and local runs: initdb into a private directory,
/// listen on a free loopback port, trust authentication for user <c>postgres</c>.
/// Durability settings stay at their defaults (fsync on), so commit costs are realistic.
/// </summary>
/// <remarks>
/// The server can be stopped and started again (<see cref="StopAsync"/> / <see cref="StartAsync"/>)
/// on the same port with the same data, which is how tests simulate a database outage.
/// It is stopped when disposed, when the process exits normally, and, through a small watchdog
/// shell process, even when this process is killed.
/// </remarks>
public sealed class EmbeddedPostgres : IAsyncDisposable
{
    private const string ConfigFileName = "twopc_embedded.conf";
    private const int PortAttempts = 3;

    private readonly EmbeddedPostgresOptions _options;
    private readonly ILogger _logger;
    private readonly PostgresBinaries _binaries;
    private readonly string _baseDirectory;
    private readonly string _runDirectory;
    private readonly bool _deleteDataDirectory;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private EventHandler? _processExitHandler;
    private Process? _watchdog;
    private bool _everStarted;
    private bool _disposed;

    /// <summary>Creates the server object; nothing runs until <see cref="StartAsync"/>.</summary>
    public EmbeddedPostgres(EmbeddedPostgresOptions? options = null, ILogger? logger = null)
    {
        _options = options ?? new EmbeddedPostgresOptions();
        _logger = logger ?? NullLogger.Instance;
        _binaries = PostgresBinaries.Locate(_options.BinDirectory);

        // Short path on purpose: the run directory holds the Unix socket, whose path is limited
        // to ~107 bytes. Layout: <temp>/twopc-pg-<id>/{run,data}.
        _baseDirectory = Path.Combine(Path.GetTempPath(), "twopc-pg-" + Guid.NewGuid().ToString("N")[..12]);
        _runDirectory = Path.Combine(_baseDirectory, "run");
        DataDirectory = _options.DataDirectory is { Length: > 0 } given
            ? Path.GetFullPath(given)
            : Path.Combine(_baseDirectory, "data");
        _deleteDataDirectory = _options.DeleteDataOnDispose ?? _options.DataDirectory is null;
        LogFile = Path.Combine(_runDirectory, "postgres.log");
        Port = _options.Port ?? PickFreePort();
    }

    /// <summary>Loopback TCP port the server listens on; kept across stop/start.</summary>
    public int Port { get; private set; }

    /// <summary>The PostgreSQL data directory (the cluster's files).</summary>
    public string DataDirectory { get; }

    /// <summary>Server log file (stderr of the postmaster).</summary>
    public string LogFile { get; }

    /// <summary>True between a successful start and the next stop.</summary>
    public bool IsRunning { get; private set; }

    /// <summary>Superuser connection to the <c>postgres</c> database.</summary>
    public string AdminConnectionString => ConnectionStringFor("postgres");

    /// <summary>Superuser connection string to <paramref name="database"/> on this server.</summary>
    public string ConnectionStringFor(string database) => new NpgsqlConnectionStringBuilder
    {
        Host = "127.0.0.1",
        Port = Port,
        Username = ProcessRunner.ServiceUser,
        Database = database,
        IncludeErrorDetail = true,
    }.ConnectionString;

    /// <summary>Creates and starts a server in one step.</summary>
    public static async Task<EmbeddedPostgres> StartNewAsync(
        EmbeddedPostgresOptions? options = null, ILogger? logger = null, CancellationToken cancellationToken = default)
    {
        var server = new EmbeddedPostgres(options, logger);
        try
        {
            await server.StartAsync(cancellationToken).ConfigureAwait(false);
            return server;
        }
        catch
        {
            await server.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>
    /// Starts the server (initialising the data directory the first time) and returns once a
    /// connection succeeds. Does nothing if it is already running.
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (IsRunning)
            {
                return;
            }

            await PrepareDirectoriesAsync(cancellationToken).ConfigureAwait(false);
            if (!File.Exists(Path.Combine(DataDirectory, "PG_VERSION")))
            {
                await InitDbAsync(cancellationToken).ConfigureAwait(false);
            }

            RegisterExitCleanup();

            for (var attempt = 1; ; attempt++)
            {
                try
                {
                    await StartServerAsync(cancellationToken).ConfigureAwait(false);
                    break;
                }
                catch (PortInUseException) when (!_everStarted && _options.Port is null && attempt < PortAttempts)
                {
                    // Someone took the port between our probe and the server's bind: pick another.
                    var previous = Port;
                    Port = PickFreePort();
                    _logger.LogWarning("Port {OldPort} was taken; retrying embedded PostgreSQL on port {Port}", previous, Port);
                }
            }

            _everStarted = true;
            IsRunning = true;
            _logger.LogInformation("Embedded PostgreSQL running on 127.0.0.1:{Port}, data in {DataDirectory}", Port, DataDirectory);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Stops the server (fast shutdown), keeping the data directory and port.</summary>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (!IsRunning)
            {
                return;
            }

            await StopServerAsync(cancellationToken).ConfigureAwait(false);
            IsRunning = false;
            _logger.LogInformation("Embedded PostgreSQL on port {Port} stopped", Port);
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Stops the server and deletes its files.</summary>
    public async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;

            // Also when a start failed half-way (pg_ctl succeeded, connections did not).
            if (IsRunning || PostmasterPidExists)
            {
                try
                {
                    await StopServerAsync(CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    _logger.LogWarning(ex, "Stopping embedded PostgreSQL on port {Port} failed", Port);
                }

                IsRunning = false;
            }

            StopWatchdog();
            if (_processExitHandler is not null)
            {
                AppDomain.CurrentDomain.ProcessExit -= _processExitHandler;
                _processExitHandler = null;
            }

            DeleteFiles();
        }
        finally
        {
            _gate.Release();
        }
    }

    private bool PostmasterPidExists => File.Exists(Path.Combine(DataDirectory, "postmaster.pid"));

    private async Task PrepareDirectoriesAsync(CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(_runDirectory);
        Directory.CreateDirectory(DataDirectory);

        // The server runs as "postgres" when we are root: it must own its data and run directory.
        await ProcessRunner.GiveToServiceUserAsync(_runDirectory, cancellationToken).ConfigureAwait(false);
        await ProcessRunner.GiveToServiceUserAsync(DataDirectory, cancellationToken).ConfigureAwait(false);
    }

    private async Task InitDbAsync(CancellationToken cancellationToken)
    {
        var result = await ProcessRunner.RunAsServiceUserAsync(
            _binaries.InitDb,
            [
                "-D", DataDirectory,
                "-U", ProcessRunner.ServiceUser,
                "-A", "trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            TimeSpan.FromMinutes(2),
            cancellationToken).ConfigureAwait(false);

        if (!result.Succeeded)
        {
            throw new InvalidOperationException($"initdb failed (exit {result.ExitCode}) for '{DataDirectory}':\n{result.Output}");
        }
    }

    private async Task StartServerAsync(CancellationToken cancellationToken)
    {
        WriteServerSettings();
        var timeoutSeconds = (int)Math.Ceiling(_options.StartTimeout.TotalSeconds);
        var result = await ProcessRunner.RunAsServiceUserAsync(
            _binaries.PgCtl,
            ["start", "-D", DataDirectory, "-l", LogFile, "-w", "-t", timeoutSeconds.ToString(CultureInfo.InvariantCulture), "-s"],
            _options.StartTimeout + TimeSpan.FromSeconds(15),
            cancellationToken).ConfigureAwait(false);

        if (!result.Succeeded)
        {
            var log = ReadLogTail();
            if (log.Contains("Address already in use", StringComparison.OrdinalIgnoreCase)
                || log.Contains("could not bind", StringComparison.OrdinalIgnoreCase))
            {
                TruncateLog();
                throw new PortInUseException();
            }

            throw new InvalidOperationException(
                $"pg_ctl start failed (exit {result.ExitCode}) for port {Port}:\n{result.Output}\nServer log tail:\n{log}");
        }

        await WaitUntilAcceptingAsync(cancellationToken).ConfigureAwait(false);
        StartWatchdog();
    }

    /// <summary>
    /// pg_ctl -w already waits for "ready", but a real round trip is the only proof that
    /// clients can get in over TCP.
    /// </summary>
    private async Task WaitUntilAcceptingAsync(CancellationToken cancellationToken)
    {
        var probe = new NpgsqlConnectionStringBuilder(AdminConnectionString) { Pooling = false, Timeout = 5 }.ConnectionString;
        var stopwatch = Stopwatch.StartNew();
        Exception? last = null;
        while (stopwatch.Elapsed < _options.StartTimeout)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                await using var connection = new NpgsqlConnection(probe);
                await connection.OpenAsync(cancellationToken).ConfigureAwait(false);
                await using var command = new NpgsqlCommand("SELECT 1", connection);
                await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or SocketException or TimeoutException)
            {
                last = ex;
                await Task.Delay(100, cancellationToken).ConfigureAwait(false);
            }
        }

        throw new InvalidOperationException(
            $"Embedded PostgreSQL on port {Port} accepted no connection within {_options.StartTimeout}. " +
            $"Last error: {last?.Message}\nServer log tail:\n{ReadLogTail()}", last);
    }

    private async Task StopServerAsync(CancellationToken cancellationToken)
    {
        var result = await ProcessRunner.RunAsServiceUserAsync(
            _binaries.PgCtl,
            ["stop", "-D", DataDirectory, "-m", "fast", "-w", "-t", "60", "-s"],
            TimeSpan.FromSeconds(75),
            cancellationToken).ConfigureAwait(false);
        if (result.Succeeded || !PostmasterPidExists)
        {
            return;
        }

        // A fast shutdown that hangs (e.g. a stuck client) must not keep the server alive.
        _logger.LogWarning("Fast shutdown failed ({Output}); using immediate shutdown", result.Output.Trim());
        result = await ProcessRunner.RunAsServiceUserAsync(
            _binaries.PgCtl,
            ["stop", "-D", DataDirectory, "-m", "immediate", "-w", "-t", "30", "-s"],
            TimeSpan.FromSeconds(45),
            cancellationToken).ConfigureAwait(false);
        if (!result.Succeeded && PostmasterPidExists)
        {
            throw new InvalidOperationException($"pg_ctl stop failed (exit {result.ExitCode}):\n{result.Output}");
        }
    }

    /// <summary>
    /// Our settings live in their own file, included from postgresql.conf, so a reused data
    /// directory gets this run's port and socket directory.
    /// </summary>
    private void WriteServerSettings()
    {
        var settings = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
        {
            ["listen_addresses"] = "'127.0.0.1'",
            ["port"] = Port.ToString(CultureInfo.InvariantCulture),
            ["max_connections"] = _options.MaxConnections.ToString(CultureInfo.InvariantCulture),
            ["unix_socket_directories"] = Quote(_runDirectory),
            // Timestamps are UTC throughout; this keeps any implicit conversion an identity.
            ["timezone"] = "'UTC'",
            ["log_timezone"] = "'UTC'",
        };
        foreach (var (name, value) in _options.ServerSettings)
        {
            settings[name] = value;
        }

        var text = new StringBuilder("# Written by OrleansTwoPC.Storage.EmbeddedPostgres on every start.\n");
        foreach (var (name, value) in settings)
        {
            text.Append(name).Append(" = ").Append(value).Append('\n');
        }

        File.WriteAllText(Path.Combine(DataDirectory, ConfigFileName), text.ToString());

        var mainConfig = Path.Combine(DataDirectory, "postgresql.conf");
        var include = $"include_if_exists = '{ConfigFileName}'";
        if (!File.ReadAllText(mainConfig).Contains(include, StringComparison.Ordinal))
        {
            File.AppendAllText(mainConfig, $"\n{include}\n");
        }
    }

    private void RegisterExitCleanup()
    {
        if (_processExitHandler is not null)
        {
            return;
        }

        // Best effort on normal process exit (including SIGTERM): stop synchronously, delete files.
        _processExitHandler = (_, _) =>
        {
            try
            {
                if (IsRunning || PostmasterPidExists)
                {
                    StopImmediatelyBlocking();
                }

                StopWatchdog();
                DeleteFiles();
            }
            catch
            {
                // Nothing sensible to do while the process is going away.
            }
        };
        AppDomain.CurrentDomain.ProcessExit += _processExitHandler;
    }

    private void StopImmediatelyBlocking()
    {
        var (fileName, arguments) = ServiceUserCommand(_binaries.PgCtl, ["stop", "-D", DataDirectory, "-m", "immediate", "-w", "-t", "10", "-s"]);
        var startInfo = new ProcessStartInfo(fileName) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            startInfo.ArgumentList.Add(argument);
        }

        using var process = Process.Start(startInfo);
        process?.WaitForExit(15_000);
        IsRunning = false;
    }

    /// <summary>
    /// A shell loop that outlives a killed process: once our PID is gone it stops the server and
    /// removes the files we would have removed. Killed by us on orderly disposal.
    /// </summary>
    private void StartWatchdog()
    {
        if (_watchdog is { HasExited: false } || OperatingSystem.IsWindows())
        {
            return;
        }

        var (stopFile, stopArguments) = ServiceUserCommand(_binaries.PgCtl, ["stop", "-D", DataDirectory, "-m", "immediate", "-w", "-t", "10", "-s"]);
        var stopCommand = string.Join(' ', new[] { stopFile }.Concat(stopArguments).Select(ShellQuote));
        // Mirrors DeleteFiles: never delete data the caller asked to keep.
        var removals = $"rm -rf {ShellQuote(_runDirectory)}"
            + (_deleteDataDirectory ? $" {ShellQuote(DataDirectory)}" : string.Empty)
            + $"; rmdir {ShellQuote(_baseDirectory)} 2>/dev/null";

        var script =
            "exec </dev/null >/dev/null 2>&1\n" +
            $"while kill -0 {Environment.ProcessId} 2>/dev/null; do sleep 1; done\n" +
            $"{stopCommand}\n" +
            $"{removals}\n";

        var startInfo = new ProcessStartInfo("/bin/sh")
        {
            UseShellExecute = false,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        startInfo.ArgumentList.Add("-c");
        startInfo.ArgumentList.Add(script);
        try
        {
            _watchdog = Process.Start(startInfo);
        }
        catch (Exception ex)
        {
            _logger.LogWarning(ex, "Could not start the embedded PostgreSQL watchdog; a killed process may leave the server running");
        }
    }

    private void StopWatchdog()
    {
        var watchdog = _watchdog;
        _watchdog = null;
        if (watchdog is null)
        {
            return;
        }

        try
        {
            if (!watchdog.HasExited)
            {
                watchdog.Kill();
                watchdog.WaitForExit(5_000);
            }
        }
        catch (InvalidOperationException)
        {
            // Already gone.
        }
        finally
        {
            watchdog.Dispose();
        }
    }

    private void DeleteFiles()
    {
        TryDelete(_runDirectory);
        if (_deleteDataDirectory)
        {
            TryDelete(DataDirectory);
        }

        try
        {
            // Only if empty: a kept data directory may live inside it.
            if (Directory.Exists(_baseDirectory) && !Directory.EnumerateFileSystemEntries(_baseDirectory).Any())
            {
                Directory.Delete(_baseDirectory);
            }
        }
        catch (IOException)
        {
            // Harmless leftover of an empty folder.
        }
    }

    private void TryDelete(string directory)
    {
        try
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _logger.LogWarning(ex, "Could not delete {Directory}", directory);
        }
    }

    private string ReadLogTail(int lines = 40)
    {
        try
        {
            if (!File.Exists(LogFile))
            {
                return "(no server log)";
            }

            var all = File.ReadAllLines(LogFile);
            return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
        }
        catch (IOException ex)
        {
            return $"(server log unreadable: {ex.Message})";
        }
    }

    private void TruncateLog()
    {
        try
        {
            File.WriteAllText(LogFile, string.Empty);
        }
        catch (IOException)
        {
            // Only cosmetic: an old bind error would otherwise be reported again.
        }
    }

    private static (string FileName, IReadOnlyList<string> Arguments) ServiceUserCommand(string executable, IReadOnlyList<string> arguments)
    {
        if (!ProcessRunner.IsRoot)
        {
            return (executable, arguments);
        }

        return (ProcessRunner.RunuserPath, new[] { "-u", ProcessRunner.ServiceUser, "--", executable }.Concat(arguments).ToArray());
    }

    private static int PickFreePort()
    {
        // Bind to port 0 and let the kernel choose; the small race until postgres binds is
        // handled by retrying the start on a new port.
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
        finally
        {
            listener.Stop();
        }
    }

    private static string Quote(string value) => "'" + value.Replace("'", "''", StringComparison.Ordinal) + "'";

    private static string ShellQuote(string value) => "'" + value.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    private sealed class PortInUseException : Exception;
}
