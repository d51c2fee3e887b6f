using OrleansTwoPC.Client.Tests.Infrastructure;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>The tpc executable's help, usage errors and missing configuration (no database needed).</summary>
public sealed class CliUsageTests
{
    public static readonly TheoryData<string, string[]> CommandOptions = new()
    {
        { "seed", ["--sku", "--account"] },
        { "order", ["--id", "--account", "--address", "--line", "--json"] },
        { "stock", ["<SKU>...", "--json"] },
        { "balance", ["<ACCOUNT>...", "--json"] },
        { "in-doubt", ["--json"] },
        { "tx", ["<ID>", "--json"] },
        { "recover", ["<ID>", "--all", "--json"] },
        { "abort", ["<ID>", "--reason", "heuristic"] },
        { "check", ["--allow-in-flight", "--wait", "--sku", "--account", "--order-prefix", "--json"] },
        { "load", ["--orders", "--concurrency", "--skus", "--accounts", "--no-seed", "--skew", "--abort-mix", "--lines", "--seed", "--run-id", "--json"] },
    };

    [Fact]
    public async Task Help_lists_every_command()
    {
        var result = await Tpc.RunAsync("--help");

        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (var command in new[] { "seed", "order", "stock", "balance", "in-doubt", "tx", "recover", "abort", "check", "load" })
        {
            Assert.Contains($"\n  {command} ", result.Out);
        }

        Assert.Contains("Exit codes", result.Out);
        Assert.Equal("", result.Error);
    }

    [Theory]
    [MemberData(nameof(CommandOptions))]
    public async Task Command_help_lists_its_options(string command, string[] expected)
    {
        var result = await Tpc.RunAsync(command, "--help");

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains($"tpc {command}", result.Out);
        foreach (var text in expected)
        {
            Assert.Contains(text, result.Out);
        }
    }

    [Theory]
    [InlineData("unknown command 'frobnicate'", "frobnicate")]
    [InlineData("no command given")]
    [InlineData("unknown option '--bogus'", "stock", "--bogus", "SKU-1")]
    [InlineData("unknown option '--colour'", "in-doubt", "--colour")]
    [InlineData("bad --line 'SKU-1:two:100'", "order", "--id", "o-1", "--account", "a", "--address", "x", "--line", "SKU-1:two:100")]
    [InlineData("bad --line 'SKU-1:2'", "order", "--id", "o-1", "--account", "a", "--address", "x", "--line", "SKU-1:2")]
    [InlineData("bad --line 'SKU 1:2:100'", "order", "--id", "o-1", "--account", "a", "--address", "x", "--line", "SKU 1:2:100")]
    [InlineData("--line", "order", "--id", "o-1", "--account", "a", "--address", "x")]
    [InlineData("bad --sku 'SKU-1'", "seed", "--sku", "SKU-1")]
    [InlineData("give a transaction id or --all", "recover")]
    [InlineData("--reason", "abort", "o-1")]
    [InlineData("--allow-in-flight: expected a non-negative number of seconds", "check", "--allow-in-flight", "soon")]
    public async Task Usage_errors_exit_2_with_one_line_and_no_stack_trace(string expected, params string[] arguments)
    {
        var result = await Tpc.RunAsync(arguments);

        AssertOneLineError(result, 2, expected);
        Assert.Equal("", result.Out);
    }

    [Theory]
    [InlineData("stock", "SKU-1")]
    [InlineData("in-doubt")]
    [InlineData("order", "--id", "o-1", "--account", "acct-1", "--address", "1 Main St", "--line", "SKU-1:1:100")]
    [InlineData("check")]
    public async Task No_connection_configured_exits_2(params string[] arguments)
    {
        var result = await Tpc.RunAsync(arguments);

        AssertOneLineError(result, 2, "no database configured");
        Assert.Contains("ConnectionStrings:PostgresServer", result.Error);
    }

    [Fact]
    public async Task Incomplete_service_databases_for_check_exit_2()
    {
        var result = await Tpc.RunAsync("check", "--ConnectionStrings:Coordinator=Host=127.0.0.1;Database=x");

        AssertOneLineError(result, 2, "missing ConnectionStrings:Inventory");
    }

    internal static void AssertOneLineError(TpcResult result, int exitCode, string expected)
    {
        Assert.True(result.ExitCode == exitCode, result.ToString());
        Assert.True(result.ErrorLines.Count == 1, "expected exactly one line on stderr: " + result);
        Assert.Contains(expected, result.Error);
        Assert.DoesNotContain("   at ", result.Error);
        Assert.DoesNotContain("Exception", result.Error);
    }
}
