using System.Diagnostics.Metrics;
using Orleans.TestingHost;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Silo.Hosting;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Performance;

/// <summary>Decision tombstones kept 3 s instead of 30, so a resubmission can meet participants that forgot the order.</summary>
public class ShortMemoryClusterFixture : TwoPcClusterFixture
{
    public static readonly TimeSpan DecisionRetention = TimeSpan.FromSeconds(3);

    protected override string Name => "short_memory";

    protected override void Configure(TestClusterBuilder builder) =>
        builder.Properties["TwoPC:Protocol:DecisionRetention"] = DecisionRetention.ToString();
}

/// <summary>The same on Orleans' ADO.NET grain storage: its insert refuses an existing row just the same.</summary>
public sealed class ShortMemoryAdoNetClusterFixture : ShortMemoryClusterFixture
{
    protected override string Name => "short_memory_adonet";

    protected override void Configure(TestClusterBuilder builder)
    {
        base.Configure(builder);
        builder.Properties[TwoPhaseCommitSiloExtensions.StorageProviderKey] = "adonet";
    }
}

[CollectionDefinition(Name)]
public sealed class ShortMemoryCollection : ICollectionFixture<ShortMemoryClusterFixture>
{
    public const string Name = "short memory";
}

[CollectionDefinition(Name)]
public sealed class ShortMemoryAdoNetCollection : ICollectionFixture<ShortMemoryAdoNetClusterFixture>
{
    public const string Name = "short memory adonet";
}

[Collection(ShortMemoryCollection.Name)]
public sealed class UnreadRecordTests(ShortMemoryClusterFixture fixture, ITestOutputHelper output) : UnreadRecordTestsBase(fixture, output);

// On the default (batched) storage only: what they rely on from the storage, that a second insert of a grain's
// record is refused, is checked on both storages by StorageProviderContractTests, and the grains are the same.

/// <summary>
/// A coordinator and a shipment do not read their record on the happy path: the order's decision and the
/// shipment's prepare are written as inserts, which the database refuses when a record exists. These tests
/// resubmit orders after everything that could have answered from memory is gone (coordinator and shipment
/// deactivated, the SKU's and the account's tombstones expired and pruned), where only that refusal keeps the
/// first outcome: a committed order is not applied twice, an aborted one is not committed now that it could be.
/// </summary>
public abstract class UnreadRecordTestsBase(TwoPcClusterFixture fixture, ITestOutputHelper output) : ClusterTestBase(fixture)
{
    [Fact]
    public async Task Orders_on_active_participants_read_no_state()
    {
        var sku = await NewSku(1_000);
        var account = await NewAccount(1_000_000);
        Assert.Equal(OrderStatus.Committed, (await Place(Order(account, (sku, 1, 10)))).Status); // SKU and account active

        using var reads = new StateReadCounter();
        var orders = Enumerable.Range(0, 10).Select(_ => Order(account, (sku, 1, 10))).ToList();
        foreach (var order in orders) Assert.Equal(OrderStatus.Committed, (await Place(order)).Status);
        await Eventually(async () => await UnfinishedAsync(orders), n => n == 0, TimeSpan.FromSeconds(20));

        output.WriteLine($"{orders.Count} orders: {reads.Count} grain state reads");
        Assert.Equal(0, reads.Count);
    }

    [Fact]
    public async Task A_committed_order_resubmitted_after_everything_forgot_it_stays_committed_once()
    {
        var sku = await NewSku(10);
        var account = await NewAccount(5_000);
        var order = Order(account, (sku, 2, 700));
        Assert.Equal(OrderStatus.Committed, (await Place(order)).Status);
        await ForgetAsync(order, sku, account);

        var again = await Place(order);

        Assert.Equal(OrderStatus.Committed, again.Status);
        Assert.Equal("Confirmed", (await Shipment(order.OrderId)).Status);
        // The resubmission's own reservations are dropped by the participants' inquiry, which names the decided attempt.
        var stock = await Eventually(() => Stock(sku), s => s.OpenReservations == 0, TimeSpan.FromSeconds(20));
        var balance = await Eventually(() => Balance(account), b => b.OpenReservations == 0, TimeSpan.FromSeconds(20));
        Assert.Equal((10 - 2 - 1, 0), (stock.Committed, stock.OpenReservations));
        Assert.Equal((5_000 - 1_400 - 10, 0), (balance.Committed, balance.OpenReservations));
    }

    [Fact]
    public async Task An_aborted_order_resubmitted_after_everything_forgot_it_stays_aborted_though_it_could_now_commit()
    {
        var sku = await NewSku(1);
        var account = await NewAccount(5_000);
        var order = Order(account, (sku, 2, 100));
        var first = await Place(order);
        Assert.Equal(OrderStatus.Aborted, first.Status);
        await Grains.GetGrain<IInventoryGrain>(sku).SetStock(50);
        await ForgetAsync(order, sku, account);
        // The shipping service forgets the order too: now every participant votes yes, and only the database's
        // refusal to write a second decision keeps the abort.
        await DeleteShipmentRowAsync(order.OrderId);

        var again = await Place(order);

        Assert.Equal(OrderStatus.Aborted, again.Status);
        Assert.Equal(first.Reason, again.Reason);
        Assert.NotEqual("Confirmed", (await Shipment(order.OrderId)).Status);
        var stock = await Eventually(() => Stock(sku), s => s.OpenReservations == 0, TimeSpan.FromSeconds(20));
        var balance = await Eventually(() => Balance(account), b => b.OpenReservations == 0, TimeSpan.FromSeconds(20));
        Assert.Equal((50 - 1, 0), (stock.Committed, stock.OpenReservations));
        Assert.Equal((5_000 - 10, 0), (balance.Committed, balance.OpenReservations));
    }

    /// <summary>
    /// Waits until the order is complete and its coordinator and shipment have left memory, then lets the
    /// retention pass and places one more order on the same SKU and account, whose prepares prune the expired
    /// tombstones; checks from the database that neither remembers the order any more.
    /// </summary>
    private async Task ForgetAsync(OrderRequest order, string sku, string account)
    {
        var transaction = TransactionIds.FromOrderId(order.OrderId);
        Assert.Equal(0, await Eventually(() => UnfinishedAsync([order]), n => n == 0, TimeSpan.FromSeconds(20)));
        var management = Grains.GetGrain<IManagementGrain>(0);
        var keys = new HashSet<string>(StringComparer.Ordinal) { order.OrderId, transaction };
        var active = await Eventually(
            async () => (await management.GetDetailedGrainStatistics()).Count(s => keys.Contains(s.GrainId.Key.ToString()!)),
            n => n == 0, TimeSpan.FromSeconds(60));
        Assert.True(active == 0, "the order's coordinator or shipment is still activated");

        // A tombstone is kept for the retention after its attempt's deadline.
        await Task.Delay(TwoPcClusterFixture.PrepareTimeout + ShortMemoryClusterFixture.DecisionRetention + TimeSpan.FromSeconds(1));
        var pruning = Order(account, (sku, 1, 10));
        Assert.Equal(OrderStatus.Committed, (await Place(pruning)).Status);
        Assert.Equal(0, await Eventually(() => UnfinishedAsync([pruning]), n => n == 0, TimeSpan.FromSeconds(20)));

        var reader = new StoredStateReader(Fixture.Databases);
        Assert.DoesNotContain(transaction, (await reader.InventoryAsync(false, sku)).Single().State.Decided.Keys);
        Assert.DoesNotContain(transaction, (await reader.PaymentsAsync(false, account)).Single().State.Decided.Keys);
    }

    private async Task DeleteShipmentRowAsync(string orderId)
    {
        await using var connection = new Npgsql.NpgsqlConnection(Fixture.Databases.Shipping);
        await connection.OpenAsync();
        await using var delete = new Npgsql.NpgsqlCommand(
            "DELETE FROM twopc_grain_state WHERE state_name = @state AND grain_key = @key; " +
            "DELETE FROM twopc_state_entry WHERE state_name = @state AND grain_key = @key; " +
            "DELETE FROM orleansstorage WHERE graintypestring = @state AND grainidextensionstring = @storedKey", connection);
        delete.Parameters.AddWithValue("state", StateNames.Shipment);
        delete.Parameters.AddWithValue("key", orderId);
        delete.Parameters.AddWithValue("storedKey", StoredGrainKey.Encode(orderId));
        Assert.True(await delete.ExecuteNonQueryAsync() >= 1, "no shipment row to delete");
    }

    private async Task<int> UnfinishedAsync(IEnumerable<OrderRequest> orders)
    {
        var transactions = orders.Select(o => TransactionIds.FromOrderId(o.OrderId)).ToHashSet(StringComparer.Ordinal);
        var coordinators = await new StoredStateReader(Fixture.Databases).CoordinatorsAsync(unfinishedOnly: false);
        var completed = coordinators.Count(c => transactions.Contains(c.Key) && c.State.IsCompleted);
        return transactions.Count - completed;
    }

    /// <summary>Grain state reads in this process (Orleans' storage meter); the collections of this project run one at a time.</summary>
    private sealed class StateReadCounter : IDisposable
    {
        private readonly MeterListener _listener = new();
        private int _count;

        public StateReadCounter()
        {
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == "Microsoft.Orleans" && instrument.Name == "orleans-storage-read-latency") listener.EnableMeasurementEvents(instrument);
            };
            _listener.SetMeasurementEventCallback<double>((_, _, _, _) => Interlocked.Increment(ref _count));
            _listener.Start();
        }

        public int Count => Volatile.Read(ref _count);

        public void Dispose() => _listener.Dispose();
    }
}
