using System.Globalization;

namespace OrleansTwoPC.Client.Commands;

/// <summary>The commands that talk to the cluster through grains.</summary>
public static class ClusterCommands
{
    public static async Task<int> SeedAsync(CommandContext c, IReadOnlyList<(string Key, long Value)> skus, IReadOnlyList<(string Key, long Value)> accounts)
    {
        var grains = await c.GrainsAsync();
        var work = skus.Select(s => (What: $"stock of {s.Key}", s.Value, Call: grains.GetGrain<IInventoryGrain>(s.Key).SetStock(s.Value)))
            .Concat(accounts.Select(a => (What: $"balance of {a.Key}", a.Value, Call: grains.GetGrain<IPaymentAccountGrain>(a.Key).SetBalance(a.Value))))
            .ToList();
        var failures = 0;
        foreach (var (what, value, call) in work)
        {
            try
            {
                await c.Call(call);
                c.Out.WriteLine($"{what} set to {value.ToString(CultureInfo.InvariantCulture)}");
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                failures++;
                c.Error.WriteLine($"tpc seed: {what} not set: {Output.OneLine(ex.GetBaseException().Message)}");
            }
        }

        return failures == 0 ? ExitCodes.Ok : ExitCodes.Failure;
    }

    public static async Task<int> OrderAsync(CommandContext c, OrderRequest order, bool json)
    {
        var grains = await c.GrainsAsync();
        var outcome = await c.Call(grains.PlaceOrderAsync(order));

        if (json)
        {
            Output.WriteJson(c.Out, outcome);
        }
        else
        {
            c.Out.WriteLine($"order {outcome.OrderId} ({outcome.TransactionId}): {outcome.Status}, amount {outcome.TotalAmount.ToString(CultureInfo.InvariantCulture)}");
            if (outcome.Reason is { Length: > 0 } reason)
            {
                c.Out.WriteLine($"reason: {reason}");
            }

            if (outcome.Votes.Count > 0)
            {
                Output.WriteTable(c.Out, ["PARTICIPANT", "VOTE", "REASON"],
                    outcome.Votes.Select(v => (IReadOnlyList<string>)[v.Participant, v.Vote, v.Reason ?? ""]));
            }

            switch (outcome.Status)
            {
                case OrderStatus.InDoubt:
                    c.Out.WriteLine($"in doubt: placing the same order again (same id and content) settles it and prints its outcome; recovery finishes it anyway (see 'tpc tx {outcome.OrderId}')");
                    break;
                case OrderStatus.Unavailable:
                    c.Out.WriteLine("nothing was decided or changed; the order can be placed again later");
                    break;
            }
        }

        return outcome.Status == OrderStatus.Committed ? ExitCodes.Ok : ExitCodes.Failure;
    }

    public static async Task<int> CountersAsync(CommandContext c, string what, IReadOnlyList<string> keys, bool json)
    {
        var grains = await c.GrainsAsync();
        var calls = keys.Distinct(StringComparer.Ordinal)
            .Select(k => what == "SKU" ? grains.GetGrain<IInventoryGrain>(k).GetSnapshot() : grains.GetGrain<IPaymentAccountGrain>(k).GetSnapshot())
            .ToList();
        var snapshots = await c.Call(Task.WhenAll(calls));
        if (json)
        {
            Output.WriteJson(c.Out, snapshots);
        }
        else
        {
            Output.WriteTable(c.Out,
                [what, what == "SKU" ? "ON HAND" : "BALANCE", "RESERVED", "AVAILABLE", "OPEN", what == "SKU" ? "SOLD" : "CHARGED", "SUPPLIED"],
                snapshots.Select(s => (IReadOnlyList<string>)(s.Exists
                    ? [s.Key, N(s.Committed), N(s.Reserved), N(s.Available), N(s.OpenReservations), N(s.ConsumedTotal), N(s.SuppliedTotal)]
                    : [s.Key, "unknown", "", "", "", "", ""])));
        }

        var unknown = snapshots.Where(s => !s.Exists).Select(s => s.Key).ToList();
        if (unknown.Count > 0)
        {
            c.Error.WriteLine($"tpc: unknown {(what == "SKU" ? "SKU" : "account")}{(unknown.Count == 1 ? "" : "s")}: {string.Join(", ", unknown)}");
            return ExitCodes.Failure;
        }

        return ExitCodes.Ok;
    }

    public static async Task<int> InDoubtAsync(CommandContext c, bool json)
    {
        var grains = await c.GrainsAsync();
        var unfinished = await c.Call(grains.GetGrain<ITransactionAdminGrain>(0).ListUnfinished());
        if (json)
        {
            Output.WriteJson(c.Out, unfinished);
            return ExitCodes.Ok;
        }

        if (unfinished.Count == 0)
        {
            c.Out.WriteLine("no unfinished transactions");
            return ExitCodes.Ok;
        }

        Output.WriteTable(c.Out, ["TRANSACTION", "STATE", "DECISION", "AGE", "PARTICIPANTS"],
            unfinished.OrderByDescending(u => u.Age).Select(u => (IReadOnlyList<string>)
            [
                u.TransactionId, u.State, u.Decision, Output.Age(u.Age),
                string.Join(", ", u.Participants.Select(p => $"{p.Participant}={p.Vote}")),
            ]));
        c.Out.WriteLine($"{unfinished.Count} unfinished transaction{(unfinished.Count == 1 ? "" : "s")}");
        return ExitCodes.Ok;
    }

    public static async Task<int> TimelineAsync(CommandContext c, string id, bool json)
    {
        var transactionId = InputParsers.ToTransactionId(id);
        var grains = await c.GrainsAsync();
        var timeline = await c.Call(grains.GetGrain<ITransactionAdminGrain>(0).GetTimeline(transactionId));
        if (!timeline.Known)
        {
            throw CliException.Failed($"unknown transaction {transactionId}: no service has a record of it");
        }

        if (json)
        {
            Output.WriteJson(c.Out, timeline);
            return ExitCodes.Ok;
        }

        c.Out.WriteLine($"{timeline.TransactionId}: {timeline.Decision}");
        Output.WriteTable(c.Out, ["TIME", "SOURCE", "EVENT"],
            timeline.Events.OrderBy(e => e.At).Select(e => (IReadOnlyList<string>)[Output.Time(e.At), e.Source, e.What]));
        return ExitCodes.Ok;
    }

    public static async Task<int> RecoverAsync(CommandContext c, string? id, bool json)
    {
        var grains = await c.GrainsAsync();
        var admin = grains.GetGrain<ITransactionAdminGrain>(0);
        var report = id is null
            ? await c.Call(admin.RecoverAll())
            : await c.Call(admin.Recover(InputParsers.ToTransactionId(id)));
        if (json)
        {
            Output.WriteJson(c.Out, report);
        }
        else
        {
            c.Out.WriteLine(
                $"recovery{(id is null ? "" : $" of {InputParsers.ToTransactionId(id)}")}: {report.CoordinatorsResumed} coordinator(s) resumed, " +
                $"{report.ParticipantsAsked} participant(s) asked, {report.InDoubtResolved} in-doubt transaction(s) resolved");
            foreach (var error in report.Errors)
            {
                c.Out.WriteLine($"  error: {Output.OneLine(error)}");
            }
        }

        return report.Errors.Count == 0 ? ExitCodes.Ok : ExitCodes.Failure;
    }

    public static async Task<int> AbortAsync(CommandContext c, string id, string reason, bool yes, bool json)
    {
        var transactionId = InputParsers.ToTransactionId(id);
        var grains = await c.GrainsAsync();
        var admin = grains.GetGrain<ITransactionAdminGrain>(0);
        var timeline = await c.Call(admin.GetTimeline(transactionId));
        // What the operator is about to do; on stderr with --json, so the output stays one JSON document.
        var notice = json ? c.Error : c.Out;
        notice.WriteLine(timeline.Known
            ? $"forcing ABORT of {transactionId} (decision now: {timeline.Decision}): a heuristic decision taken by an operator, " +
              "not by the protocol (allowed only while no decision is durable; refused once committed)"
            : $"transaction {transactionId} is unknown: no service has a record of it. Aborting it records an ABORT decision, " +
              $"so order id {OrderIdOf(transactionId)} can never be used for an order.");

        if (!yes && !await c.ConfirmAsync($"Abort {transactionId}? [y/N] "))
        {
            throw c.CanAsk
                ? CliException.Failed($"abort of {transactionId} not confirmed; nothing was changed")
                : CliException.Usage($"abort of {transactionId} needs confirmation and there is no terminal to ask: add --yes; nothing was changed");
        }

        TransactionReport report;
        try
        {
            report = await c.Call(admin.HeuristicAbort(transactionId, reason));
        }
        catch (Exception ex) when (ex is not (OperationCanceledException or TimeoutException or CliException))
        {
            throw CliException.Failed($"abort of {transactionId} refused: {Output.OneLine(ex.GetBaseException().Message)}", ex);
        }

        if (json)
        {
            Output.WriteJson(c.Out, report);
        }
        else
        {
            c.Out.WriteLine($"{report.TransactionId}: {report.Decision} ({report.Phase})" +
                            (report.AbortReason is { Length: > 0 } why ? $", reason: {why}" : ""));
            if (report.Unacknowledged.Count > 0)
            {
                c.Out.WriteLine($"  still to acknowledge: {string.Join(", ", report.Unacknowledged)}");
            }

            if (!timeline.Known && string.Equals(report.Decision, "Abort", StringComparison.OrdinalIgnoreCase))
            {
                c.Out.WriteLine($"  {transactionId} was unknown: order id {OrderIdOf(transactionId)} is now used up (an order with it is answered Aborted)");
            }
        }

        if (!string.Equals(report.Decision, "Abort", StringComparison.OrdinalIgnoreCase))
        {
            c.Error.WriteLine($"tpc abort: {report.TransactionId} was not aborted: its decision is {report.Decision}");
            return ExitCodes.Failure;
        }

        return ExitCodes.Ok;
    }

    private static string OrderIdOf(string transactionId) =>
        transactionId.StartsWith("tx-", StringComparison.Ordinal) ? transactionId[3..] : transactionId;

    private static string N(long value) => value.ToString(CultureInfo.InvariantCulture);
}
