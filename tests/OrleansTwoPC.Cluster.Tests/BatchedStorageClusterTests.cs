using CsCheck;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Orleans.Storage;
using Orleans.TestingHost;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Silo.Hosting;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Checking;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests;

/// <summary>The two-silo cluster with <c>TwoPC:Storage:Provider=batched</c>, on databases of its own.</summary>
public sealed class BatchedStorageClusterFixture : TwoPcClusterFixture
{
    protected override string Name => "batched";

    protected override void Configure(TestClusterBuilder builder) =>
        builder.Properties[TwoPhaseCommitSiloExtensions.StorageProviderKey] = BatchedGrainStorage.ProviderName;
}

/// <summary>Like <see cref="BatchedStorageClusterFixture"/>, on databases where the adonet provider already stored state.</summary>
public sealed class BatchedOverAdoNetStateFixture : TwoPcClusterFixture
{
    protected override int SiloCount => 1;

    protected override string Name => "batched_over_adonet";

    protected override void Configure(TestClusterBuilder builder) =>
        builder.Properties[TwoPhaseCommitSiloExtensions.StorageProviderKey] = BatchedGrainStorage.ProviderName;

    protected override async Task<ServiceDatabases> ProvisionDatabasesAsync()
    {
        var databases = await base.ProvisionDatabasesAsync();
        await using var connection = new NpgsqlConnection(databases.Payments);
        await connection.OpenAsync();
        await using var write = new NpgsqlCommand("SELECT orleans_storage_write(1, 0, 1, 1, @state, @key, 'adonet', NULL, '\\x7b7d'::bytea)", connection);
        write.Parameters.AddWithValue("state", StateNames.Payment);
        write.Parameters.AddWithValue("key", Guid.NewGuid().ToString("D"));
        await write.ExecuteNonQueryAsync();
        return databases;
    }
}

[CollectionDefinition(Name)]
public sealed class BatchedStorageCollection : ICollectionFixture<BatchedStorageClusterFixture>
{
    public const string Name = "batched storage";
}

/// <summary>
/// The transaction manager on the batched grain storage: orders over generated ids commit, every id has its own row
/// in twopc_grain_state (and Orleans' table stays empty), the checker reads it, recovery releases a reservation it
/// finds there (stored as an entry row of the record), a hot SKU's head row stays small while its tombstones are rows
/// of their own, and a stale ETag is Orleans' InconsistentStateException.
/// </summary>
[Collection(BatchedStorageCollection.Name)]
public sealed class BatchedStorageClusterTests(BatchedStorageClusterFixture fixture, ITestOutputHelper output) : ClusterTestBase(fixture)
{
    [Fact]
    public async Task Orders_over_generated_ids_commit_with_every_id_in_its_own_row_and_the_checker_is_clean()
    {
        var ids = await OrdersOverGeneratedIds(samples: 8, output);
        foreach (var (name, connectionString) in Fixture.Databases.All)
        {
            Assert.Equal(0L, await ScalarAsync(connectionString, "SELECT count(*) FROM orleansstorage"));
            output.WriteLine($"{name}: {await ScalarAsync(connectionString, "SELECT count(*) FROM twopc_grain_state")} rows in twopc_grain_state");
        }
        Assert.Equal((long)ids.Count, await ScalarAsync(Fixture.Databases.Inventory,
            "SELECT count(*) FROM twopc_grain_state WHERE state_name = @s AND grain_key = ANY(@k)", ("s", StateNames.Inventory), ("k", ids.ToArray())));
    }

    [Fact]
    public async Task A_hot_skus_head_row_stays_under_1_KB_while_its_tombstones_are_rows_of_their_own()
    {
        const int Orders = 60;
        var sku = await NewSku(Orders * 2);
        var account = await NewAccount(1_000_000);
        var orders = Enumerable.Range(0, Orders).Select(_ => Order(account, (sku, 1, 10))).ToList();
        var largestHead = 0;
        // In waves of concurrent orders, so the SKU's writes also carry several steps at once (group commit).
        foreach (var wave in orders.Chunk(12))
        {
            Assert.All(await Task.WhenAll(wave.Select(Place)), o => Assert.Equal(OrderStatus.Committed, o.Status));
            largestHead = Math.Max(largestHead, await HeadBytes(Fixture.Databases.Inventory, StateNames.Inventory, sku));
        }
        foreach (var order in orders) await WaitCompleted(order.OrderId);
        largestHead = Math.Max(largestHead, await HeadBytes(Fixture.Databases.Inventory, StateNames.Inventory, sku));

        var stored = Assert.Single(await new StoredStateReader(Fixture.Databases).InventoryAsync(false, sku)).State;
        var tombstones = (long)(await ScalarAsync(Fixture.Databases.Inventory,
            "SELECT count(*) FROM twopc_state_entry WHERE state_name = @s AND grain_key = @k AND entry_key LIKE 'd:%'", ("s", StateNames.Inventory), ("k", sku)))!;
        var whole = System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(stored, StateJson.Options).Length;
        var accountHead = await HeadBytes(Fixture.Databases.Payments, StateNames.Payment, account);
        output.WriteLine($"SKU after {Orders} orders: head at most {largestHead} B, {tombstones} tombstone rows (the whole record would be {whole} B); account head {accountHead} B");
        Assert.InRange(largestHead, 1, 1023);
        Assert.InRange(accountHead, 1, 1023);
        Assert.Equal(stored.Decided.Count, tombstones);
        Assert.True(whole > 1024, $"the whole record is only {whole} B: the test did not make the SKU hot");
        Assert.Empty(stored.Prepared);
        Assert.Equal(Orders, stored.Resource.Committed);
    }

    [Fact]
    public async Task A_hot_skus_writes_carry_at_most_MaxStepsPerWrite_steps_each_however_many_orders_come_at_once()
    {
        const int Orders = 96;
        var maxSteps = new ProtocolOptions().MaxStepsPerWrite;
        var sku = await NewSku(Orders * 2);
        var account = await NewAccount(1_000_000);
        // Every entry row the SKU's writes change, with the transaction that changed it: one transaction per write.
        var log = $"entry_log_{Guid.NewGuid():N}";
        await ScalarAsync(Fixture.Databases.Inventory, $"""
            CREATE TABLE {log} (txid bigint, entry_key text, change text);
            CREATE FUNCTION {log}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP = 'DELETE' THEN
                    IF OLD.grain_key = '{sku}' THEN INSERT INTO {log} VALUES (txid_current(), OLD.entry_key, TG_OP); END IF;
                ELSIF NEW.grain_key = '{sku}' THEN
                    INSERT INTO {log} VALUES (txid_current(), NEW.entry_key, TG_OP);
                END IF;
                RETURN NULL;
            END $$;
            CREATE TRIGGER {log} AFTER INSERT OR UPDATE OR DELETE ON twopc_state_entry FOR EACH ROW EXECUTE FUNCTION {log}();
            """);
        try
        {
            var orders = Enumerable.Range(0, Orders).Select(_ => Order(account, (sku, 1, 10))).ToList();
            Assert.All(await Task.WhenAll(orders.Select(Place)), o => Assert.Equal(OrderStatus.Committed, o.Status));
            foreach (var order in orders) await WaitCompleted(order.OrderId);

            // A fresh SKU forgets no tombstone within the test, so a step changes at most two entries: a prepare adds
            // its reservation; a commit deletes it (unless the same write added it) and adds its tombstone.
            var perWrite = ((long[])(await ScalarAsync(Fixture.Databases.Inventory,
                $"SELECT array_agg(n ORDER BY n DESC) FROM (SELECT count(*) AS n FROM {log} GROUP BY txid) AS w"))!);
            output.WriteLine($"{Orders} concurrent orders on one SKU: {perWrite.Length} writes changed its entries, the largest {perWrite[0]} entries; at most {maxSteps} steps per write");
            Assert.InRange(perWrite[0], 1, 2L * maxSteps);
            Assert.True(perWrite.Length >= 2 * Orders / maxSteps, $"{perWrite.Length} writes for {2 * Orders} steps");
            Assert.Equal(Orders, (long)(await ScalarAsync(Fixture.Databases.Inventory, $"SELECT count(*) FROM {log} WHERE entry_key LIKE 'd:%'"))!);
        }
        finally
        {
            await ScalarAsync(Fixture.Databases.Inventory, $"DROP TRIGGER {log} ON twopc_state_entry; DROP FUNCTION {log}(); DROP TABLE {log}");
        }
    }

    [Fact]
    public async Task The_operator_views_list_transactions_stored_by_the_batched_provider()
    {
        var sku = await NewSku(10);
        var account = await NewAccount(10_000);
        var committed = Order(account, (sku, 1, 100));
        var aborted = Order(account, (sku, 100, 100)); // more than the stock
        Assert.Equal(OrderStatus.Committed, (await Place(committed)).Status);
        Assert.Equal(OrderStatus.Aborted, (await Place(aborted)).Status);
        await WaitCompleted(committed.OrderId);
        await WaitCompleted(aborted.OrderId);

        // tpc list, the console's list and the in-doubt gauges read through TransactionListReader.
        var list = new TransactionListReader(Fixture.Databases);
        var one = await list.ListAsync(new TransactionQuery(OrderId: committed.OrderId));
        Assert.Equal(("committed", committed.OrderId), (Assert.Single(one.Items).Status, one.Items[0].OrderId));
        var abortedPage = await list.ListAsync(new TransactionQuery(Status: TransactionStatus.Aborted, Limit: TransactionQuery.MaxLimit));
        Assert.Contains(abortedPage.Items, t => t.OrderId == aborted.OrderId);
        Assert.Empty(await list.InDoubtAsync());

        // The console's overview counts both decisions of its window.
        var overview = await new TransactionOverviewReader(Fixture.Databases, reason => reason ?? "").ReadAsync(TimeSpan.FromMinutes(10), DateTimeOffset.UtcNow);
        Assert.True(overview.Committed >= 1 && overview.Aborted >= 1, $"overview: {overview.Committed} committed, {overview.Aborted} aborted");
    }

    [Fact]
    public async Task The_recovery_sweep_releases_an_abandoned_reservation_stored_by_the_batched_provider()
    {
        var now = DateTimeOffset.UtcNow;
        var sku = Unique("SKU");
        var tx = TransactionIds.FromOrderId(Unique("abandoned"));
        // Prepared long ago by a coordinator that never wrote anything (it died before deciding).
        var record = new ParticipantRecord<EscrowCounter, long> { Resource = new EscrowCounter { Exists = true, Committed = 50, SuppliedTotal = 50 } };
        record.Prepared[tx] = new PreparedTransaction<long> { Work = 3, Coordinator = tx, PreparedAt = now.AddMinutes(-10), Deadline = now.AddMinutes(-10).AddSeconds(5) };
        await Provider(StorageNames.Inventory).WriteStateAsync(StateNames.Inventory, Grains.GetGrain<IInventoryGrain>(sku).GetGrainId(), new GrainState<ParticipantRecord<EscrowCounter, long>>(record));
        var reader = new StoredStateReader(Fixture.Databases);
        Assert.Contains(sku, (await reader.InventoryAsync(true)).Select(s => s.Key));

        var sweep = await Grains.GetGrain<ITransactionAdminGrain>(0).RecoverAll();
        Assert.Empty(sweep.Errors);

        var stock = Assert.Single(await reader.InventoryAsync(false, sku));
        Assert.Empty(stock.State.Prepared);
        Assert.Equal(50, stock.State.Resource.Committed);
        Assert.Equal(Decision.Abort, Assert.Single(await reader.CoordinatorAsync(tx)).State.Decision);
    }

    [Fact]
    public async Task A_stale_etag_is_an_inconsistent_state_and_changes_nothing()
    {
        var provider = Provider(StorageNames.Payments);
        var grain = Grains.GetGrain<IPaymentAccountGrain>(Unique("acct")).GetGrainId();
        var first = new GrainState<ParticipantRecord<EscrowCounter, long>>(new ParticipantRecord<EscrowCounter, long> { Resource = new EscrowCounter { Exists = true, Committed = 7, SuppliedTotal = 7 } });
        await provider.WriteStateAsync(StateNames.Payment, grain, first);
        Assert.Equal("1", first.ETag);

        var stale = new GrainState<ParticipantRecord<EscrowCounter, long>>(new ParticipantRecord<EscrowCounter, long> { Resource = new EscrowCounter { Exists = true, Committed = 99, SuppliedTotal = 99 } });
        await Assert.ThrowsAsync<InconsistentStateException>(() => provider.WriteStateAsync(StateNames.Payment, grain, stale));

        var read = new GrainState<ParticipantRecord<EscrowCounter, long>>();
        await provider.ReadStateAsync(StateNames.Payment, grain, read);
        Assert.Equal(("1", true, 7L), (read.ETag, read.RecordExists, read.State!.Resource.Committed));
        await provider.ClearStateAsync(StateNames.Payment, grain, read);
        Assert.Equal(("2", false), (read.ETag, read.RecordExists));
        await provider.ReadStateAsync(StateNames.Payment, grain, read);
        Assert.Equal(("2", false, 0L), (read.ETag, read.RecordExists, read.State!.Resource.Committed));
    }

    [Fact]
    public async Task A_silo_refuses_batched_storage_on_a_database_holding_adonet_state()
    {
        var refused = new BatchedOverAdoNetStateFixture();
        try
        {
            var error = await Assert.ThrowsAnyAsync<Exception>(refused.InitializeAsync);
            Assert.Contains("payments storage: TwoPC:Storage:Provider=batched, but the database holds grain state written by the adonet provider",
                error.GetBaseException().Message);
        }
        finally
        {
            await refused.DisposeAsync();
        }
    }

    [Theory]
    [InlineData(null, "batched")]
    [InlineData("adonet", "adonet")]
    [InlineData(" Batched ", "batched")]
    public void The_storage_provider_setting_is_read_without_case_or_blanks(string? value, string provider) =>
        Assert.Equal(provider, TwoPhaseCommitSiloExtensions.StorageProvider(Settings(value)));

    [Fact]
    public void An_unknown_storage_provider_is_one_clear_error()
    {
        var value = "batch" + Guid.NewGuid().ToString("N")[..4];
        var error = Assert.Throws<SiloStartupException>(() => TwoPhaseCommitSiloExtensions.StorageProvider(Settings(value)));
        Assert.Equal($"TwoPC:Storage:Provider must be adonet or batched, not '{value}'", error.Message);
    }

    private static IConfiguration Settings(string? provider) =>
        new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { [TwoPhaseCommitSiloExtensions.StorageProviderKey] = provider }).Build();

    private IGrainStorage Provider(string storage) =>
        Fixture.Cluster.Silos.OfType<InProcessSiloHandle>().First().SiloHost.Services.GetRequiredKeyedService<IGrainStorage>(storage);

    private static async Task<int> HeadBytes(string connectionString, string state, string key) =>
        (int)(await ScalarAsync(connectionString, "SELECT octet_length(payload) FROM twopc_grain_state WHERE state_name = @s AND grain_key = @k", ("s", state), ("k", key)))!;

    private static async Task<object?> ScalarAsync(string connectionString, string sql, params (string Name, object Value)[] args)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in args) command.Parameters.AddWithValue(name, value);
        return await command.ExecuteScalarAsync();
    }
}
