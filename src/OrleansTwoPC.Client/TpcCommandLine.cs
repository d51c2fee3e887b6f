using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using OrleansTwoPC.Client.Commands;
using OrleansTwoPC.Storage.Checking;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Client;

/// <summary>The command tree of <c>tpc</c> (System.CommandLine) and the entry point that runs it.</summary>
public static class TpcCommandLine
{
    private const string Overview =
        "tpc: console for the OrleansTwoPC transaction manager (orders, stock, balances, recovery, invariant check).\n" +
        "Configuration: appsettings.json beside tpc, a profile ($TPC_PROFILE, else ~/.config/tpc/appsettings.json), the\n" +
        "environment (ConnectionStrings__PostgresServer=...), or --Section:Key=Value anywhere on the command line.\n" +
        "Databases: ConnectionStrings:Coordinator (check, list: also :Inventory, :Payments, :Shipping), or\n" +
        "ConnectionStrings:PostgresServer with TwoPC:DatabasePrefix (default twopc).\n" +
        "Cluster: TwoPC:ClusterId (default twopc), TwoPC:ServiceId (default OrleansTwoPC), TwoPC:Client:ConnectTimeout\n" +
        "(default 00:00:10), TwoPC:Client:ResponseTimeout (00:00:30), TwoPC:Client:LogLevel (None).\n" +
        "Exit codes: 0 ok, 1 failed (order not committed, unknown transaction, invariant violated), 2 usage or connection error.";

    /// <summary>Parses and runs; everything the user sees goes to <paramref name="output"/> and <paramref name="error"/>.</summary>
    public static async Task<int> RunAsync(string[] arguments, TextWriter output, TextWriter error, string? baseDirectory = null)
    {
        ClientSettings settings;
        string[] commandArguments;
        try
        {
            (settings, commandArguments) = ClientSettings.Load(arguments, baseDirectory);
        }
        catch (Exception ex) when (ex is InvalidDataException or FormatException or IOException)
        {
            error.WriteLine($"tpc: bad configuration: {Output.OneLine(ex.Message)}");
            return ExitCodes.UsageOrConnection;
        }

        var root = Build(settings, output, error);
        ParseResult parse;
        try
        {
            parse = root.Parse(commandArguments, new ParserConfiguration { ResponseFileTokenReplacer = null });
        }
        catch (Exception ex)
        {
            error.WriteLine($"tpc: cannot parse the command line: {Output.OneLine(ex.Message)} (see 'tpc --help')");
            return ExitCodes.UsageOrConnection;
        }

        if (parse.Errors.Count > 0 && parse.Action is not { ClearsParseErrors: true })
        {
            var command = parse.CommandResult.Command;
            var name = command == root ? "tpc" : $"tpc {command.Name}";
            var message = command == root && commandArguments.Length == 0
                ? $"no command given; commands: {string.Join(", ", root.Subcommands.Select(s => s.Name))}"
                : parse.UnmatchedTokens.Count > 0
                    ? Unknown(parse.UnmatchedTokens[0], command == root, root)
                    : Output.OneLine(parse.Errors[0].Message);
            error.WriteLine($"{name}: {message} (see '{name} --help')");
            return ExitCodes.UsageOrConnection;
        }

        var invocation = new InvocationConfiguration
        {
            Output = output,
            Error = error,
            EnableDefaultExceptionHandler = false,
        };
        try
        {
            return await parse.InvokeAsync(invocation);
        }
        catch (Exception ex)
        {
            // The handlers catch everything; this is the last line of defence against a stack trace.
            error.WriteLine($"tpc: failed: {Output.OneLine(ServiceAvailability.Describe(ex.GetBaseException().Message))}");
            return ExitCodes.Failure;
        }
    }

    public static RootCommand Build(ClientSettings settings, TextWriter output, TextWriter error)
    {
        var root = new RootCommand(Overview);

        Option<bool> Json() => new("--json") { Description = "Print the result as JSON" };

        void Action(Command command, Func<ParseResult, CommandContext, Task<int>> handler) =>
            command.SetAction((parse, cancel) =>
                CommandContext.RunAsync(command.Name, settings, output, error, context => handler(parse, context), cancel));

        // ---- seed ----------------------------------------------------------------------------------
        var seedSkus = new Option<string[]>("--sku")
        {
            Description = "SKU=QTY: set the units on hand of a SKU (creates it); repeatable",
            HelpName = "SKU=QTY",
            AllowMultipleArgumentsPerToken = true,
            Arity = ArgumentArity.OneOrMore,
        };
        var seedAccounts = new Option<string[]>("--account")
        {
            Description = "ACCT=AMOUNT: set the balance of an account in minor units (opens it); repeatable",
            HelpName = "ACCT=AMOUNT",
            AllowMultipleArgumentsPerToken = true,
            Arity = ArgumentArity.OneOrMore,
        };
        seedSkus.Validators.Add(r => ValidateAll(r, t => InputParsers.ParseAssignment(t, "--sku", "SKU", out var e) is null ? e : null));
        seedAccounts.Validators.Add(r => ValidateAll(r, t => InputParsers.ParseAssignment(t, "--account", "account id", out var e) is null ? e : null));
        var seed = new Command("seed", "Set stock of SKUs and balances of accounts (administrative; refused below what open transactions reserve)")
        {
            seedSkus, seedAccounts,
        };
        seed.Validators.Add(r =>
        {
            if (r.GetResult(seedSkus) is null && r.GetResult(seedAccounts) is null)
            {
                r.AddError("give at least one --sku SKU=QTY or --account ACCT=AMOUNT");
            }
        });
        Action(seed, (p, c) => ClusterCommands.SeedAsync(c,
            Assignments(p.GetValue(seedSkus), "--sku", "SKU"),
            Assignments(p.GetValue(seedAccounts), "--account", "account id")));
        root.Subcommands.Add(seed);

        // ---- order ---------------------------------------------------------------------------------
        var orderId = new Option<string>("--id") { Description = "Order id (the transaction id is tx-<id>)", Required = true, HelpName = "ID" };
        var orderAccount = new Option<string>("--account") { Description = "Account to charge", Required = true, HelpName = "ACCT" };
        var orderAddress = new Option<string>("--address") { Description = "Shipping address", Required = true, HelpName = "ADDRESS" };
        var orderLines = new Option<string[]>("--line")
        {
            Description = "SKU:QTY:PRICE (unit price in minor units), or sku=SKU,qty=QTY,price=PRICE for a SKU containing ':'; repeatable",
            HelpName = "SKU:QTY:PRICE",
            Required = true,
            AllowMultipleArgumentsPerToken = true,
            Arity = ArgumentArity.OneOrMore,
        };
        orderId.Validators.Add(r => AddIdError(r, "order id"));
        orderAccount.Validators.Add(r => AddIdError(r, "account id"));
        orderAddress.Validators.Add(r =>
        {
            if (string.IsNullOrWhiteSpace(r.GetValueOrDefault<string>())) r.AddError("--address is blank");
        });
        orderLines.Validators.Add(r => ValidateAll(r, t => InputParsers.ParseLine(t, out var e) is null ? e : null));
        var orderJson = Json();
        var order = new Command("order",
            "Place an order atomically (reserve stock, charge the account, create the shipment); prints the outcome and every vote.\n" +
            $"Answers within {PlaceOrderTimeouts.Response.TotalSeconds:0} s: with no answer by then the coordinator's silo died and the order is in doubt; placing the\n" +
            "same order again settles it. Exit 0 committed; 1 aborted, rejected, in doubt or unavailable.")
        {
            orderId, orderAccount, orderAddress, orderLines, orderJson,
        };
        Action(order, (p, c) => ClusterCommands.OrderAsync(c,
            new OrderRequest(
                p.GetValue(orderId)!,
                p.GetValue(orderLines)!.Select(l => InputParsers.ParseLine(l, out _)!).ToList(),
                p.GetValue(orderAccount)!,
                p.GetValue(orderAddress)!),
            p.GetValue(orderJson)));
        root.Subcommands.Add(order);

        // ---- stock / balance -----------------------------------------------------------------------
        foreach (var (name, what, description) in new[]
                 {
                     ("stock", "SKU", "Show SKUs' committed stock, reservations and totals (exit 1 if one is unknown)"),
                     ("balance", "ACCOUNT", "Show accounts' committed balance, holds and totals (exit 1 if one is unknown)"),
                 })
        {
            var keys = new Argument<string[]>(what) { Description = $"{(what == "SKU" ? "SKUs" : "Account ids")} to show", Arity = ArgumentArity.OneOrMore };
            keys.Validators.Add(r =>
            {
                foreach (var token in r.Tokens)
                {
                    if ((OptionLike(token.Value) ?? InputParsers.CheckId(token.Value, what == "SKU" ? "SKU" : "account id")) is { } problem)
                    {
                        r.AddError(problem);
                        return;
                    }
                }
            });
            var json = Json();
            var command = new Command(name, description) { keys, json };
            Action(command, (p, c) => ClusterCommands.CountersAsync(c, what == "SKU" ? "SKU" : "ACCOUNT", p.GetValue(keys)!, p.GetValue(json)));
            root.Subcommands.Add(command);
        }

        // ---- in-doubt ------------------------------------------------------------------------------
        var inDoubtJson = Json();
        var inDoubt = new Command("in-doubt", "List unfinished transactions: id, state, decision, age, participants and their votes") { inDoubtJson };
        Action(inDoubt, (p, c) => ClusterCommands.InDoubtAsync(c, p.GetValue(inDoubtJson)));
        root.Subcommands.Add(inDoubt);

        // ---- list ----------------------------------------------------------------------------------
        var listStatus = new Option<string>("--status")
        {
            Description = $"Only this status: {string.Join(", ", TransactionStatuses.Names)} (default: all)",
            HelpName = "STATUS",
        };
        listStatus.Validators.Add(r =>
        {
            if (r.Tokens.Count > 0 && !TransactionStatuses.TryParse(r.Tokens[0].Value, out _))
                r.AddError($"--status must be one of {string.Join(", ", TransactionStatuses.Names)}, not '{r.Tokens[0].Value}'");
        });
        var listSince = new Option<string>("--since") { Description = "Started at or after: an ISO 8601 time with offset (2026-11-30T04:00:00Z) or an age (90s, 15m, 2h, 1d)", HelpName = "TIME" };
        var listUntil = new Option<string>("--until") { Description = "Started before (same forms as --since)", HelpName = "TIME" };
        foreach (var (option, field) in new[] { (listSince, "--since"), (listUntil, "--until") })
        {
            option.Validators.Add(r =>
            {
                if (r.Tokens.Count == 0) return;
                try
                {
                    TransactionQuery.ParseTime(r.Tokens[0].Value, field, DateTimeOffset.UtcNow);
                }
                catch (FormatException ex)
                {
                    r.AddError(ex.Message);
                }
            });
        }

        var listOrder = new Option<string>("--order") { Description = "Only this order id (or transaction id)", HelpName = "ID" };
        listOrder.Validators.Add(r => AddIdError(r, "order id"));
        var listLimit = new Option<int>("--limit")
        {
            Description = $"At most this many (1..{TransactionQuery.MaxLimit})",
            HelpName = "N",
            DefaultValueFactory = _ => TransactionQuery.DefaultLimit,
            CustomParser = WholeNumber(1, TransactionQuery.MaxLimit),
        };
        var listOffset = new Option<int>("--offset") { Description = "Skip this many first (paging)", HelpName = "N", CustomParser = WholeNumber(0, TransactionQuery.MaxOffset) };
        var listJson = Json();
        var list = new Command("list",
            "List transactions newest first, read straight from PostgreSQL (no cluster needed; the admin API's query).\n" +
            "Statuses: committed and aborted (every participant acknowledged), in-doubt (prepared somewhere, no durable\n" +
            "decision), in-flight (decided, phase two not acknowledged by all). Exit 2 when the databases cannot be read.")
        {
            listStatus, listSince, listUntil, listOrder, listLimit, listOffset, listJson,
        };
        Action(list, (p, c) =>
        {
            TransactionQuery query;
            try
            {
                query = TransactionQuery.Parse(p.GetValue(listStatus), p.GetValue(listSince), p.GetValue(listUntil), p.GetValue(listOrder),
                    p.GetValue(listOffset).ToString(CultureInfo.InvariantCulture), p.GetValue(listLimit).ToString(CultureInfo.InvariantCulture), DateTimeOffset.UtcNow);
            }
            catch (FormatException ex)
            {
                // Only what the options' validators cannot see alone (--since not before --until).
                throw CliException.Usage(ex.Message);
            }

            return ListCommand.RunAsync(c, query, p.GetValue(listJson));
        });
        root.Subcommands.Add(list);

        // ---- tx ------------------------------------------------------------------------------------
        var txId = TransactionArgument();
        var txJson = Json();
        var tx = new Command("tx", "Show everything the services know about one transaction, in time order (exit 1 if unknown)") { txId, txJson };
        Action(tx, (p, c) => ClusterCommands.TimelineAsync(c, p.GetValue(txId)!, p.GetValue(txJson)));
        root.Subcommands.Add(tx);

        // ---- recover -------------------------------------------------------------------------------
        var recoverId = TransactionArgument();
        recoverId.Arity = ArgumentArity.ZeroOrOne;
        var recoverAll = new Option<bool>("--all") { Description = "Sweep every unfinished transaction now" };
        var recoverJson = Json();
        var recover = new Command("recover",
            "Finish unfinished transactions now instead of waiting for the in-doubt timeout: one (<ID>) or all (--all).\n" +
            "Exit 1 if recovery reported errors.")
        {
            recoverId, recoverAll, recoverJson,
        };
        recover.Validators.Add(r =>
        {
            var hasId = r.GetResult(recoverId) is { Tokens.Count: > 0 };
            var all = r.GetResult(recoverAll) is not null;
            if (hasId == all)
            {
                r.AddError(hasId ? "give either a transaction id or --all, not both" : "give a transaction id or --all");
            }
        });
        Action(recover, (p, c) => ClusterCommands.RecoverAsync(c, p.GetValue(recoverAll) ? null : p.GetValue(recoverId), p.GetValue(recoverJson)));
        root.Subcommands.Add(recover);

        // ---- abort ---------------------------------------------------------------------------------
        var abortId = TransactionArgument();
        var abortReason = new Option<string>("--reason") { Description = "Why (recorded with the decision)", Required = true, HelpName = "TEXT" };
        abortReason.Validators.Add(r =>
        {
            if (string.IsNullOrWhiteSpace(r.GetValueOrDefault<string>())) r.AddError("--reason is blank");
        });
        var abortYes = new Option<bool>("--yes") { Description = "Do not ask for confirmation (required when there is no terminal to ask)" };
        var abortJson = Json();
        var abort = new Command("abort",
            "Force ABORT of a transaction that has no durable decision. This is a heuristic decision: an operator\n" +
            "overrides the protocol (e.g. a coordinator that cannot finish); it is recorded as such and refused once\n" +
            "the transaction committed. Asks for confirmation unless --yes. Aborting an id the cluster never saw uses\n" +
            "that order id up: an order with it is answered Aborted. Exit 1 if refused, 2 if not confirmed without a terminal.")
        {
            abortId, abortReason, abortYes, abortJson,
        };
        Action(abort, (p, c) => ClusterCommands.AbortAsync(c, p.GetValue(abortId)!, p.GetValue(abortReason)!, p.GetValue(abortYes), p.GetValue(abortJson)));
        root.Subcommands.Add(abort);

        // ---- check ---------------------------------------------------------------------------------
        var allowInFlight = new Option<double?>("--allow-in-flight")
        {
            Description = "Tolerate in-flight work younger than this (a live system): open reservations and unfinished transactions",
            HelpName = "SECONDS",
            CustomParser = ParseSeconds,
        };
        var checkWait = new Option<double?>("--wait")
        {
            Description = "First wait up to this long for nothing to be left behind (recovery finishing), then check",
            HelpName = "SECONDS",
            CustomParser = ParseSeconds,
        };
        var checkSkus = new Option<string[]>("--sku")
        {
            Description = "Only these SKUs (repeatable; default: all)",
            HelpName = "SKU",
            AllowMultipleArgumentsPerToken = true,
            Arity = ArgumentArity.OneOrMore,
        };
        var checkAccounts = new Option<string[]>("--account")
        {
            Description = "Only these accounts (repeatable; default: all)",
            HelpName = "ACCT",
            AllowMultipleArgumentsPerToken = true,
            Arity = ArgumentArity.OneOrMore,
        };
        var checkPrefix = new Option<string>("--order-prefix")
        {
            Description = "Only orders (transactions, shipments) whose id starts with this (default: all)",
            HelpName = "PREFIX",
        };
        var checkJson = Json();
        var check = new Command("check",
            "Check the invariants I1-I5 directly in PostgreSQL (no cluster needed): atomicity, conservation of stock\n" +
            "and money, no negative or oversold counter, outcomes applied as decided, nothing left behind.\n" +
            "Exit 0 when all hold, 1 on any violation, 2 when the databases cannot be read.")
        {
            allowInFlight, checkWait, checkSkus, checkAccounts, checkPrefix, checkJson,
        };
        Action(check, (p, c) =>
        {
            var options = new InvariantCheckOptions
            {
                Skus = NullIfEmpty(p.GetValue(checkSkus)),
                Accounts = NullIfEmpty(p.GetValue(checkAccounts)),
                OrderIdPrefix = p.GetValue(checkPrefix),
                AllowInFlight = p.GetValue(allowInFlight) is { } allow ? TimeSpan.FromSeconds(allow) : null,
            };
            var wait = p.GetValue(checkWait) is { } w ? TimeSpan.FromSeconds(w) : (TimeSpan?)null;
            return CheckCommand.RunAsync(c, options, wait, p.GetValue(checkJson));
        });
        root.Subcommands.Add(check);

        // ---- load ----------------------------------------------------------------------------------
        var loadOrders = new Option<int>("--orders") { Description = "Number of orders to place", HelpName = "N", DefaultValueFactory = _ => 1000, CustomParser = WholeNumber(1, 10_000_000) };
        var loadConcurrency = new Option<int>("--concurrency") { Description = "Concurrent callers", HelpName = "C", DefaultValueFactory = _ => 32, CustomParser = WholeNumber(1, 10_000) };
        var loadSkus = new Option<int>("--skus") { Description = $"SKUs {LoadCommand.SkuPrefix}0001.. to order from", HelpName = "K", DefaultValueFactory = _ => 100, CustomParser = WholeNumber(1, 9999) };
        var loadAccounts = new Option<int>("--accounts") { Description = $"Accounts {LoadCommand.AccountPrefix}0001.. to charge", HelpName = "A", DefaultValueFactory = _ => 100, CustomParser = WholeNumber(1, 9999) };
        var loadNoSeed = new Option<bool>("--no-seed")
        {
            Description = $"Do not seed the SKUs ({LoadCommand.SeededStock} units each), the accounts ({LoadCommand.SeededBalance} each) and {LoadCommand.PoorAccount} (0) first",
        };
        var loadSkew = new Option<double>("--skew") { Description = "Key skew: 0 uniform, else a Zipf-like exponent (1 = a few SKUs and accounts take most orders)", HelpName = "S", CustomParser = Fraction(0, 100) };
        var loadAbortMix = new Option<double>("--abort-mix")
        {
            Description = $"Fraction 0..1 of orders made to abort: half ask for more stock than exists, half charge {LoadCommand.PoorAccount}",
            HelpName = "P",
            CustomParser = Fraction(0, 1),
        };
        var loadLines = new Option<int>("--lines") { Description = $"Most lines per order (1..{OrleansTwoPC.Abstractions.OrderPlan.MaxParticipants - 2})", HelpName = "L", DefaultValueFactory = _ => 1, CustomParser = WholeNumber(1, OrleansTwoPC.Abstractions.OrderPlan.MaxParticipants - 2) };
        var loadSeed = new Option<int?>("--seed") { Description = "Random seed of the generated orders (default: random; printed)", HelpName = "N", CustomParser = r => WholeNumber(0, int.MaxValue)(r) };
        var loadRunId = new Option<string>("--run-id") { Description = "Prefix of the order ids (default: a short random id, so reruns never collide)", HelpName = "ID" };
        loadRunId.Validators.Add(r =>
        {
            if (r.Tokens.Count == 0) return;
            var value = r.Tokens[0].Value;
            if (value.Length > OrleansTwoPC.Abstractions.OrderPlan.MaxIdLength - 7)
            {
                r.AddError($"--run-id '{value}' is longer than {OrleansTwoPC.Abstractions.OrderPlan.MaxIdLength - 7} characters");
            }
            else if ((OptionLike(value) ?? InputParsers.CheckId(value, "run id")) is { } problem)
            {
                r.AddError(problem);
            }
        });
        var loadJson = Json();
        var load = new Command("load",
            "Place N generated orders from C concurrent callers and report throughput, p50/p95/p99 latency and outcomes\n" +
            "(commits, aborts by reason, rejected, in doubt, unavailable, failures); a progress line on a terminal.\n" +
            "Ctrl+C stops issuing orders, waits for those in flight and prints the summary of what finished (a second\n" +
            "Ctrl+C stops waiting). Exit 0 when no call failed and nothing is in doubt, 1 otherwise, 130 when interrupted.")
        {
            loadOrders, loadConcurrency, loadSkus, loadAccounts, loadNoSeed, loadSkew, loadAbortMix, loadLines, loadSeed, loadRunId, loadJson,
        };
        Action(load, (p, c) => LoadCommand.RunAsync(c, new LoadOptions(
            p.GetValue(loadOrders),
            p.GetValue(loadConcurrency),
            p.GetValue(loadSkus),
            p.GetValue(loadAccounts),
            p.GetValue(loadNoSeed),
            p.GetValue(loadSkew),
            p.GetValue(loadAbortMix),
            p.GetValue(loadLines),
            p.GetValue(loadSeed) ?? Random.Shared.Next(),
            p.GetValue(loadRunId) ?? LoadCommand.NewRunId(),
            p.GetValue(loadJson))));
        root.Subcommands.Add(load);

        return root;
    }

    private static string[]? NullIfEmpty(string[]? values) => values is { Length: > 0 } ? values : null;

    private static double? ParseSeconds(ArgumentResult result)
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds >= 0 && seconds <= 1e9)
        {
            return seconds;
        }

        var option = (result.Parent as OptionResult)?.Option.Name ?? "value";
        result.AddError($"{option}: expected a non-negative number of seconds, got '{text}'");
        return null;
    }

    private static Func<ArgumentResult, int> WholeNumber(int min, int max) => result =>
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
        {
            return value;
        }

        var option = (result.Parent as OptionResult)?.Option.Name ?? "value";
        result.AddError($"{option}: expected a whole number from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)}, got '{text}'");
        return 0;
    };

    private static Func<ArgumentResult, double> Fraction(double min, double max) => result =>
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[0].Value : "";
        if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
        {
            return value;
        }

        var option = (result.Parent as OptionResult)?.Option.Name ?? "value";
        result.AddError($"{option}: expected a number from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)}, got '{text}'");
        return 0;
    };

    private static string Unknown(string token, bool atRoot, RootCommand root) =>
        token.StartsWith('-')
            ? $"unknown option '{token}'"
            : atRoot
                ? $"unknown command '{token}'; commands: {string.Join(", ", root.Subcommands.Select(s => s.Name))}"
                : $"unexpected argument '{token}'";

    /// <summary>An argument that looks like an option was meant as one: say so instead of "bad id".</summary>
    private static string? OptionLike(string value) => value.StartsWith('-') ? $"unknown option '{value}'" : null;

    private static Argument<string> TransactionArgument()
    {
        var argument = new Argument<string>("ID") { Description = "Order id or transaction id (tx-<order id>)" };
        argument.Validators.Add(r =>
        {
            if (r.Tokens.Count == 0) return;
            var value = r.Tokens[0].Value;
            if ((OptionLike(value) ?? InputParsers.CheckId(InputParsers.ToTransactionId(value), "transaction id")) is { } problem)
            {
                r.AddError(problem);
            }
        });
        return argument;
    }

    private static void AddIdError(OptionResult result, string what)
    {
        if (result.Tokens.Count > 0 && InputParsers.CheckId(result.Tokens[0].Value, what) is { } problem)
        {
            result.AddError(problem);
        }
    }

    private static void ValidateAll(OptionResult result, Func<string, string?> problemOf)
    {
        foreach (var token in result.Tokens)
        {
            if (problemOf(token.Value) is { } problem)
            {
                result.AddError(problem);
                return;
            }
        }
    }

    private static IReadOnlyList<(string Key, long Value)> Assignments(string[]? values, string option, string what) =>
        (values ?? []).Select(v => InputParsers.ParseAssignment(v, option, what, out _)!.Value).ToList();
}
