using Npgsql;

namespace OrleansTwoPC.Client.Commands;

/// <summary>What a command's handler gets: settings, the console, cancellation, and the cluster on demand.</summary>
public sealed class CommandContext : IAsyncDisposable
{
    private ClusterConnection? _connection;

    public CommandContext(ClientSettings settings, TextWriter output, TextWriter error, CancellationToken cancellationToken)
    {
        Settings = settings;
        Out = output;
        Error = error;
        CancellationToken = cancellationToken;
    }

    public ClientSettings Settings { get; }
    public TextWriter Out { get; }
    public TextWriter Error { get; }
    public CancellationToken CancellationToken { get; }

    /// <summary>Connects on first use (exit code 2 when the cluster cannot be reached).</summary>
    public async Task<IGrainFactory> GrainsAsync()
    {
        _connection ??= await ClusterConnection.ConnectAsync(Settings, CancellationToken).ConfigureAwait(false);
        return _connection.Client;
    }

    /// <summary>True when a person can be asked: standard input is a terminal.</summary>
    public bool CanAsk => !Console.IsInputRedirected;

    /// <summary>Asks a yes/no question on the terminal; false (without asking) when there is none to ask.</summary>
    public async Task<bool> ConfirmAsync(string question)
    {
        if (!CanAsk)
        {
            return false;
        }

        // On stderr, like every message to the person: stdout may be a JSON document.
        Error.Write(question);
        Error.Flush();
        var answer = await Console.In.ReadLineAsync(CancellationToken).ConfigureAwait(false);
        return answer?.Trim().ToLowerInvariant() is "y" or "yes";
    }

    /// <summary>Awaits a grain call, giving up (not cancelling it) on Ctrl+C.</summary>
    public Task<T> Call<T>(Task<T> call) => call.WaitAsync(CancellationToken);

    public Task Call(Task call) => call.WaitAsync(CancellationToken);

    public async ValueTask DisposeAsync()
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>One line for a cluster error: what it means for the operator, then the cluster's message.</summary>
    public static string Describe(TwoPcException error) => error.Code switch
    {
        TwoPcErrorCode.StorageUnavailable => $"storage unavailable; try again when the database is back: {Output.OneLine(error.Message)}",
        TwoPcErrorCode.ServiceUnavailable => $"service unavailable; try again later: {Output.OneLine(ServiceAvailability.Describe(error.Message))}",
        TwoPcErrorCode.Conflict => $"conflict with a concurrent change; try again: {Output.OneLine(error.Message)}",
        TwoPcErrorCode.InvalidRequest => $"refused: {Output.OneLine(error.Message)}",
        _ => $"failed: {Output.OneLine(error.Message)}",
    };

    /// <summary>Runs a handler and turns every failure into one line on stderr and an exit code.</summary>
    public static async Task<int> RunAsync(
        string command, ClientSettings settings, TextWriter output, TextWriter error,
        Func<CommandContext, Task<int>> handler, CancellationToken cancellationToken)
    {
        var context = new CommandContext(settings, output, error, cancellationToken);
        try
        {
            return await handler(context).ConfigureAwait(false);
        }
        catch (CliException ex)
        {
            error.WriteLine($"tpc {command}: {Output.OneLine(ex.Message)}");
            return ex.ExitCode;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            error.WriteLine($"tpc {command}: interrupted");
            return ExitCodes.Interrupted;
        }
        catch (Exception ex) when (TwoPcException.Find(ex) is { } contract)
        {
            // The cluster's own error (a code and one line), also when Orleans wrapped it (a failed activation).
            error.WriteLine($"tpc {command}: {Describe(contract)}");
            return ExitCodes.Failure;
        }
        catch (TimeoutException ex)
        {
            error.WriteLine($"tpc {command}: no answer within {settings.ResponseTimeout.TotalSeconds:0.#} s, the outcome is unknown: {Output.OneLine(ex.Message)}");
            return ExitCodes.Failure;
        }
        catch (NpgsqlException ex)
        {
            error.WriteLine($"tpc {command}: database error{(ex.IsTransient ? " (storage unavailable)" : "")}: {Output.OneLine(ex.Message)}");
            return ExitCodes.UsageOrConnection;
        }
        catch (Exception ex)
        {
            var inner = ex.GetBaseException();
            error.WriteLine($"tpc {command}: failed: {Output.OneLine(ServiceAvailability.Describe(inner.Message))}");
            return ExitCodes.Failure;
        }
        finally
        {
            await context.DisposeAsync().ConfigureAwait(false);
        }
    }
}
