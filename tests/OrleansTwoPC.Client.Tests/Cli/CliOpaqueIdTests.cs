using System.Globalization;
using System.Text.Json;
using OrleansTwoPC.Client.Tests.Infrastructure;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>Ids that look like numbers stay distinct through a real silo process and the <c>tpc</c> console.</summary>
[Collection(PostgresCollection.Name)]
public sealed class CliOpaqueIdTests(PostgresFixture postgres, ITestOutputHelper log)
{
    [Fact]
    public async Task Numeric_and_hex_looking_ids_are_distinct_skus_accounts_and_orders()
    {
        // Generated: a hex word in three spellings and a decimal number with and without a leading zero.
        var random = new Random();
        var hex = random.NextInt64(0x1000, 0xFFFFFFF).ToString("x", CultureInfo.InvariantCulture);
        var number = random.NextInt64(10, 99_999_999).ToString(CultureInfo.InvariantCulture);
        var ids = new[] { hex, hex.ToUpperInvariant(), "0" + hex, number, "0" + number, "00" + number }.Distinct(StringComparer.Ordinal).ToList();
        log.WriteLine("ids: " + string.Join(" ", ids));

        await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "ids", TimeSpan.FromSeconds(40));
        try
        {
            var seed = await Tpc.RunAsync(["seed", .. ids.SelectMany((id, i) => new[] { "--sku", $"{id}={10 + i}", "--account", $"{id}={1000 + i}" }), .. silo.TpcSettings]);
            Assert.True(seed.ExitCode == 0, seed.ToString());
            for (var i = 0; i < ids.Count; i++)
            {
                var order = await Tpc.RunAsync(["order", "--id", ids[i], "--account", ids[i], "--address", $"{i} Hex Street", "--line", $"{ids[i]}:{i + 1}:10", .. silo.TpcSettings]);
                Assert.True(order.ExitCode == 0, order.ToString());
            }

            var stock = await Tpc.RunAsync(["stock", .. ids, "--json", .. silo.TpcSettings]);
            Assert.True(stock.ExitCode == 0, stock.ToString());
            var snapshots = JsonDocument.Parse(stock.Out).RootElement.EnumerateArray().ToList();
            Assert.Equal(ids, snapshots.Select(s => s.GetProperty("key").GetString()));
            Assert.Equal(ids.Select((_, i) => 10L + i - (i + 1)), snapshots.Select(s => s.GetProperty("committed").GetInt64()));

            var balance = await Tpc.RunAsync(["balance", .. ids, "--json", .. silo.TpcSettings]);
            Assert.Equal(ids.Select((_, i) => 1000L + i - (i + 1) * 10), JsonDocument.Parse(balance.Out).RootElement.EnumerateArray().Select(s => s.GetProperty("committed").GetInt64()));

            var check = await Tpc.RunAsync(["check", "--wait", "20", .. silo.TpcSettings]);
            log.WriteLine(check.ToString());
            Assert.True(check.ExitCode == 0, check.ToString());
        }
        catch
        {
            log.WriteLine(silo.Output);
            throw;
        }
    }
}
