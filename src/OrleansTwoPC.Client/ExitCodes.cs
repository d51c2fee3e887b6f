namespace OrleansTwoPC.Client;

/// <summary>The process exit codes of <c>tpc</c>.</summary>
public static class ExitCodes
{
    /// <summary>Done; for <c>order</c>: committed; for <c>check</c>: every invariant holds.</summary>
    public const int Ok = 0;

    /// <summary>The command ran but failed: order not committed, unknown transaction, invariant violated, grain error.</summary>
    public const int Failure = 1;

    /// <summary>Bad usage (unknown command, bad option or value) or no connection (nothing configured,
    /// database unreachable, no gateway of the cluster reachable).</summary>
    public const int UsageOrConnection = 2;

    /// <summary>Interrupted (Ctrl+C).</summary>
    public const int Interrupted = 130;
}

/// <summary>An error to report as one line on stderr with the given exit code.</summary>
public sealed class CliException(int exitCode, string message, Exception? inner = null) : Exception(message, inner)
{
    public int ExitCode { get; } = exitCode;

    public static CliException Usage(string message) => new(ExitCodes.UsageOrConnection, message);

    public static CliException Connection(string message, Exception? inner = null) => new(ExitCodes.UsageOrConnection, message, inner);

    public static CliException Failed(string message, Exception? inner = null) => new(ExitCodes.Failure, message, inner);
}
