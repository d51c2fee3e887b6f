using CsCheck;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using Orleans.TestingHost;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Checking;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests;

/// <summary>Its own databases, so the invariant check sees only this test's orders.</summary>
public sealed class OpaqueIdClusterFixture : TwoPcClusterFixture
{
    protected override string Name => "ids";
}

[CollectionDefinition(Name)]
public sealed class OpaqueIdCollection : ICollectionFixture<OpaqueIdClusterFixture>
{
    public const string Name = "opaque ids";
}

/// <summary>
/// Ids are opaque strings end to end: generated ids that Orleans would read as numbers or GUIDs (digits,
/// leading zeros, hex in both cases, GUID shapes, punctuation, maximum length) each name their own SKU,
/// account and order, in grain storage, in the state reader, in the checker and in recovery.
/// </summary>
[Collection(OpaqueIdCollection.Name)]
public sealed class OpaqueIdTests(OpaqueIdClusterFixture fixture, ITestOutputHelper output) : ClusterTestBase(fixture)
{
    [Fact]
    public Task Generated_ids_each_name_their_own_resources_and_the_checker_is_clean() => OrdersOverGeneratedIds(samples: 12, output);

    [Fact]
    public async Task An_abandoned_reservation_on_a_generated_id_is_released_by_the_recovery_sweep()
    {
        await GeneratedIds.Families.SampleAsync(async family =>
        {
            var now = DateTimeOffset.UtcNow;
            // Prepared long ago by a coordinator that never wrote anything (it died before deciding).
            for (var i = 0; i < family.Length; i++)
            {
                var id = family[i];
                await WriteAsync(StorageNames.Inventory, StateNames.Inventory, Grains.GetGrain<IInventoryGrain>(id),
                    Abandoned(new EscrowCounter { Exists = true, Committed = 50 + i, SuppliedTotal = 50 + i }, (long)(i + 1), id, now));
                await WriteAsync(StorageNames.Payments, StateNames.Payment, Grains.GetGrain<IPaymentAccountGrain>(id),
                    Abandoned(new EscrowCounter { Exists = true, Committed = 5_000 + i, SuppliedTotal = 5_000 + i }, (long)(i + 1) * 10, id, now));
            }
            var reader = new StoredStateReader(Fixture.Databases);
            // Each under its own key (prepared, or already released by the background sweep, which runs every 2 s).
            var storedBefore = (await reader.InventoryAsync(false)).Select(s => s.Key).ToHashSet(StringComparer.Ordinal);
            Assert.Superset(family.ToHashSet(), storedBefore);

            var sweep = await Grains.GetGrain<ITransactionAdminGrain>(0).RecoverAll();
            Assert.Empty(sweep.Errors);

            for (var i = 0; i < family.Length; i++)
            {
                var id = family[i];
                var stock = (await reader.InventoryAsync(false, id)).Single();
                Assert.Empty(stock.State.Prepared);
                Assert.Equal(50 + i, stock.State.Resource.Committed);
                var account = (await reader.PaymentsAsync(false, id)).Single();
                Assert.Empty(account.State.Prepared);
                Assert.Equal(5_000 + i, account.State.Resource.Committed);
                // Presumed abort was made durable under the right transaction.
                var coordinator = (await reader.CoordinatorAsync(AbandonedTransaction(id))).Single();
                Assert.Equal(Decision.Abort, coordinator.State.Decision);
                Assert.Equal(ParticipantTransactionStatus.Aborted.ToString(), await Grains.GetGrain<IInventoryGrain>(id).GetTransactionStatus(AbandonedTransaction(id)));
            }
        }, iter: 6, threads: 1);
    }

    [Fact]
    public async Task Ids_outside_the_validated_alphabet_are_refused_and_write_nothing()
    {
        var sku = await NewSku(10);
        var account = await NewAccount(1_000);
        foreach (var bad in new[] { "caf\u00e9", "\u6f22\u5b57", "a b", "a+b", "~cafe", "a/b" })
        {
            var outcome = await Place(new OrderRequest(Unique("ord"), [new OrderLine(bad, 1, 1)], account, "x"));
            Assert.Equal(OrderStatus.Rejected, outcome.Status);
            Assert.Contains("may contain only", outcome.Reason);
        }
        Assert.Equal(10, (await Stock(sku)).Committed);
    }

    /// <summary>A transaction id of its own for each generated id, derived from a valid order id (participants
    /// refuse transaction ids no order could have, and "abandoned-" + a 64-character id would be too long).</summary>
    private static string AbandonedTransaction(string id) =>
        TransactionIds.FromOrderId("abandoned-" + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(id)))[..24]);

    private static ParticipantRecord<EscrowCounter, long> Abandoned(EscrowCounter counter, long work, string id, DateTimeOffset now)
    {
        var tx = AbandonedTransaction(id);
        var record = new ParticipantRecord<EscrowCounter, long> { Resource = counter };
        record.Prepared[tx] = new PreparedTransaction<long> { Work = work, Coordinator = tx, PreparedAt = now.AddMinutes(-10), Deadline = now.AddMinutes(-10).AddSeconds(5) };
        return record;
    }

    /// <summary>Writes a record through the silo's own storage provider, as the grain would (before it is activated).</summary>
    private async Task WriteAsync<T>(string storage, string stateName, IAddressable grain, T state)
    {
        var silo = Fixture.Cluster.Silos.OfType<InProcessSiloHandle>().First();
        var provider = silo.SiloHost.Services.GetRequiredKeyedService<IGrainStorage>(storage);
        await provider.WriteStateAsync(stateName, grain.GetGrainId(), new GrainState<T>(state));
    }

    private async Task WaitAllCompleted()
    {
        var checker = new InvariantChecker(Fixture.Databases);
        var quiet = await Eventually(async () => (await checker.FindLeftoversAsync()).Count, n => n == 0, TimeSpan.FromSeconds(20));
        Assert.Equal(0, quiet);
    }
}
