using System.Text.Json;
using OrleansTwoPC.Client.Tests.Infrastructure;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>The tpc executable against a real PostgreSQL that holds the schema but where no silo runs.</summary>
[Collection(PostgresCollection.Name)]
public sealed class CliDatabaseTests(PostgresFixture postgres)
{
    private string Server => $"--ConnectionStrings:PostgresServer={postgres.AdminConnectionString}";

    private static string Prefix => $"--TwoPC:DatabasePrefix={PostgresFixture.Prefix}";

    [Fact]
    public async Task Unreachable_cluster_exits_2_quickly_with_a_clear_message()
    {
        await postgres.ResetAsync();

        var result = await Tpc.RunAsync("stock", "SKU-1", Server, Prefix, "--TwoPC:ClusterId=nobody-home");

        CliUsageTests.AssertOneLineError(result, 2, "cannot connect to cluster 'nobody-home'");
        Assert.Contains("gateway", result.Error);
        Assert.True(result.Elapsed < TimeSpan.FromSeconds(15), result.ToString());
    }

    [Fact]
    public async Task Missing_database_exits_2()
    {
        var result = await Tpc.RunAsync("check", Server, "--TwoPC:DatabasePrefix=nosuchprefix");

        CliUsageTests.AssertOneLineError(result, 2, "nosuchprefix_");
    }

    [Fact]
    public async Task Check_of_a_consistent_database_exits_0()
    {
        await WriteAsync(World.Consistent(DateTimeOffset.UtcNow));

        var result = await Tpc.RunAsync("check", Server, Prefix);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("OK: I1-I5 hold", result.Out);
        Assert.Contains("1 committed, 2 aborted", result.Out);
        Assert.Equal("", result.Error);
    }

    [Fact]
    public async Task Check_of_a_broken_database_exits_1_and_prints_the_violation()
    {
        var world = World.Consistent(DateTimeOffset.UtcNow);
        world.Sku("SKU-A").Prepared["tx-o-7"] = World.Prepared("tx-o-7", 3L, DateTimeOffset.UtcNow.AddMinutes(-10));
        await WriteAsync(world);

        var result = await Tpc.RunAsync("check", Server, Prefix);

        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.Contains("1 violation:", result.Out);
        Assert.Contains("I5 inventory/SKU-A still holds tx-o-7 prepared", result.Out);

        // Tolerated as in flight when younger than the allowance; reported with --json otherwise.
        var tolerant = await Tpc.RunAsync("check", "--allow-in-flight", "3600", Server, Prefix);
        Assert.True(tolerant.ExitCode == 0, tolerant.ToString());

        var json = await Tpc.RunAsync("check", "--json", Server, Prefix);
        Assert.True(json.ExitCode == 1, json.ToString());
        using var document = JsonDocument.Parse(json.Out);
        Assert.False(document.RootElement.GetProperty("ok").GetBoolean());
        var violation = Assert.Single(document.RootElement.GetProperty("violations").EnumerateArray());
        Assert.Equal("I5", violation.GetProperty("code").GetString());
    }

    [Fact]
    public async Task Check_scope_options_restrict_what_is_checked()
    {
        var world = World.Consistent(DateTimeOffset.UtcNow);
        world.Seed("OTHER-SKU", 1);
        world.Sku("OTHER-SKU").Resource.Committed = -4;
        await WriteAsync(world);

        var everything = await Tpc.RunAsync("check", Server, Prefix);
        Assert.True(everything.ExitCode == 1, everything.ToString());
        Assert.Contains("inventory/OTHER-SKU", everything.Out);

        var scoped = await Tpc.RunAsync("check", "--sku", "SKU-A", "--sku", "SKU-B", "--account", "acct-1", "--order-prefix", "o-", Server, Prefix);
        Assert.True(scoped.ExitCode == 0, scoped.ToString());
        Assert.Contains("checked: 2 SKUs, 1 accounts, 2 shipments", scoped.Out);
    }

    private async Task WriteAsync(World world)
    {
        await postgres.ResetAsync();
        await world.WriteAsync(postgres.Databases);
    }
}
