using System.Globalization;
using Npgsql;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Client.Commands;

/// <summary><c>list</c>: transactions by status and time, newest first, read straight from PostgreSQL (the admin
/// API's query; no cluster needed).</summary>
public static class ListCommand
{
    public static async Task<int> RunAsync(CommandContext c, TransactionQuery query, bool json)
    {
        var databases = c.Settings.AllDatabases();
        TransactionPage page;
        try
        {
            page = await new TransactionListReader(databases).ListAsync(query, c.CancellationToken);
        }
        catch (NpgsqlException ex)
        {
            throw CliException.Connection($"cannot read the service databases ({ClientSettings.Describe(databases.Coordinator)} and the others): {Output.OneLine(ex.Message)}", ex);
        }

        if (json)
        {
            Output.WriteJson(c.Out, page);
            return ExitCodes.Ok;
        }

        if (page.Items.Count == 0)
        {
            c.Out.WriteLine(page.Total == 0 ? "no transactions match" : $"no transactions on this page ({page.Total.ToString(CultureInfo.InvariantCulture)} match; lower --offset)");
            return ExitCodes.Ok;
        }

        Output.WriteTable(c.Out, ["TRANSACTION", "STATUS", "DECISION", "STARTED", "DECIDED", "PARTICIPANTS", "REASON"],
            page.Items.Select(t => (IReadOnlyList<string>)
            [
                t.TransactionId, t.Status, t.Decision, Output.Time(t.StartedAt), Output.Time(t.DecidedAt),
                t.Participants.Count.ToString(CultureInfo.InvariantCulture), Output.OneLine(t.AbortReason ?? "").Replace("(no details)", ""),
            ]));
        var first = page.Offset + 1;
        var last = page.Offset + page.Items.Count;
        c.Out.WriteLine($"{first.ToString(CultureInfo.InvariantCulture)}-{last.ToString(CultureInfo.InvariantCulture)} of {page.Total.ToString(CultureInfo.InvariantCulture)}" +
                        (last < page.Total ? $" (next page: --offset {last.ToString(CultureInfo.InvariantCulture)})" : ""));
        return ExitCodes.Ok;
    }
}
