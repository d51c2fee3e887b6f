using System.Text;
using CsCheck;
using Npgsql;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains.Coordinator;
using OrleansTwoPC.Protocol;

namespace OrleansTwoPC.Cluster.Tests.Participants;

/// <summary>
/// An order refused for an unknown SKU or account writes nothing anywhere (no coordinator record, no
/// shipment, no reservation or tombstone on the participants that do exist) and does not use up its order
/// id: once the SKU or account is seeded, the same order commits.
/// </summary>
[Collection(ParticipantDefenceCollection.Name)]
public sealed class RejectedOrderTests(ParticipantDefenceFixture fixture) : ClusterTestBase(fixture)
{
    private enum Missing { Sku, Account, Both }

    [Fact]
    public async Task An_order_rejected_for_an_unknown_SKU_or_account_writes_no_row_and_its_id_commits_later()
    {
        await Gen.Select(Gen.Enum<Missing>(), Gen.Bool, Gen.Int[1, 3]).SampleAsync(async (missing, knownSkuToo, quantity) =>
        {
            var knownSku = await NewSku(100);
            var knownAccount = await NewAccount(100_000);
            var unknownSku = Unique("nosku");
            var unknownAccount = Unique("noacct");
            var sku = missing == Missing.Account ? knownSku : unknownSku;
            var account = missing == Missing.Sku ? knownAccount : unknownAccount;
            var lines = new List<(string, int, long)> { (sku, quantity, 100) };
            if (knownSkuToo && sku != knownSku) lines.Add((knownSku, 1, 100));
            var order = Order(account, lines.ToArray());

            var outcome = await Place(order);

            Assert.Equal(OrderStatus.Rejected, outcome.Status);
            Assert.Contains(missing == Missing.Account ? $"unknown account {unknownAccount}" : $"unknown SKU {unknownSku}", outcome.Reason);
            Assert.Empty(await RowsMentioning(order.OrderId));
            Assert.Equal(0, (await Stock(knownSku)).Reserved);

            if (sku == unknownSku) await Grains.GetGrain<IInventoryGrain>(unknownSku).SetStock(100);
            if (account == unknownAccount) await Grains.GetGrain<IPaymentAccountGrain>(unknownAccount).SetBalance(100_000);
            var resubmitted = await Place(order);

            Assert.Equal(OrderStatus.Committed, resubmitted.Status);
            await WaitCompleted(order.OrderId);
            Assert.Equal("Confirmed", (await Shipment(order.OrderId)).Status);
        }, iter: 12, threads: 1);
    }

    /// <summary>
    /// The participants' own refusal stays as the defence when the coordinator's check could not tell
    /// (here the coordinators' caches wrongly claim the SKU exists): the order is still rejected.
    /// </summary>
    [Fact]
    public async Task An_unknown_SKU_the_existence_check_missed_is_still_rejected_by_its_participant()
    {
        var account = await NewAccount(10_000);
        var sku = Unique("nosku");
        foreach (var silo in Fixture.Cluster.Silos.OfType<Orleans.TestingHost.InProcessSiloHandle>())
            Microsoft.Extensions.DependencyInjection.ServiceProviderServiceExtensions.GetRequiredService<ExistingResourceCache>(silo.SiloHost.Services)
                .Add(new ParticipantId(ParticipantKind.Inventory, sku));

        var outcome = await Place(Order(account, (sku, 1, 100)));

        Assert.Equal(OrderStatus.Rejected, outcome.Status);
        Assert.Contains($"unknown SKU {sku}", outcome.Reason);
        Assert.Equal(0, (await Balance(account)).Reserved);
    }

    [Fact]
    public void The_existence_cache_is_bounded_and_keeps_what_is_in_use()
    {
        Gen.Select(Gen.Int[1, 50], Gen.Int[0, 400]).Sample((capacity, adds) =>
        {
            var cache = new ExistingResourceCache(capacity);
            var hot = new ParticipantId(ParticipantKind.Inventory, "hot");
            cache.Add(hot);
            for (var i = 0; i < adds; i++)
            {
                cache.Add(new ParticipantId(ParticipantKind.Payment, $"a{i}"));
                Assert.True(cache.Contains(hot));
                Assert.True(cache.Count <= 2 * capacity);
            }
            Assert.True(cache.Contains(new ParticipantId(ParticipantKind.Payment, $"a{adds - 1}")) || adds == 0);
        });
    }

    /// <summary>Rows of any of the four databases' grain storage whose key or payload mentions the order id.</summary>
    private async Task<IReadOnlyList<string>> RowsMentioning(string orderId)
    {
        var rows = new List<string>();
        foreach (var (name, connectionString) in Fixture.Databases.All)
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand(
                "SELECT state_name, grain_key FROM twopc_grain_state " +
                "WHERE position(@id IN grain_key) > 0 OR position(@bytes IN coalesce(payload, ''::bytea)) > 0", connection);
            command.Parameters.AddWithValue("id", orderId);
            command.Parameters.AddWithValue("bytes", Encoding.UTF8.GetBytes(orderId));
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync()) rows.Add($"{name}: {reader.GetString(0)} {reader.GetString(1)}");
        }
        return rows;
    }
}
