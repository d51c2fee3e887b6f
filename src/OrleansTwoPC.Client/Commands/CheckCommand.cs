using Npgsql;
using OrleansTwoPC.Storage.Checking;

namespace OrleansTwoPC.Client.Commands;

/// <summary><c>check</c>: the invariant checker, run straight against PostgreSQL (no cluster needed).</summary>
public static class CheckCommand
{
    public static async Task<int> RunAsync(CommandContext c, InvariantCheckOptions options, TimeSpan? wait, bool json)
    {
        var databases = c.Settings.AllDatabases();
        var checker = new InvariantChecker(databases, options);
        InvariantReport report;
        try
        {
            report = wait is { } timeout
                ? await checker.WaitUntilQuiescentAsync(timeout, cancellationToken: c.CancellationToken)
                : await checker.CheckAsync(c.CancellationToken);
        }
        catch (NpgsqlException ex)
        {
            throw CliException.Connection($"cannot read the service databases ({ClientSettings.Describe(databases.Coordinator)} and the others): {Output.OneLine(ex.Message)}", ex);
        }

        if (json)
        {
            Output.WriteJson(c.Out, report);
        }
        else
        {
            c.Out.Write(report.ToText());
        }

        return report.Ok ? ExitCodes.Ok : ExitCodes.Failure;
    }
}
