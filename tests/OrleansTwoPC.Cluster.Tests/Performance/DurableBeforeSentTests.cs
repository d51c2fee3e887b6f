using Npgsql;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Performance;

/// <summary>
/// Nothing is sent before the write it depends on has committed, seen from outside through real grains and the
/// batched storage: a commit held in PostgreSQL (a deferred trigger waiting on an advisory lock the test holds)
/// holds the vote, the decision or the acknowledgement that depends on it, and only that. And an inquiry racing
/// the order itself leaves one decision, made by the database, that every answer agrees with.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class DurableBeforeSentTests(TwoPcClusterFixture fixture, ITestOutputHelper output) : ClusterTestBase(fixture)
{
    private static readonly TimeSpan Held = TimeSpan.FromMilliseconds(400);

    [Fact]
    public async Task A_held_prepare_commit_holds_the_vote_so_nothing_is_decided_until_it_is_durable()
    {
        var (sku, account, order, tx) = await NewOrder();
        await using (var hold = await CommitHold.StartAsync(Fixture.Databases.Inventory, StateNames.Inventory, sku, "UPDATE"))
        {
            var placing = Place(order);
            await hold.WaitUntilWaitingAsync();
            await Task.Delay(Held);

            Assert.False(placing.IsCompleted, "the order was answered while the SKU's prepare was not durable");
            Assert.Empty(await Reader.CoordinatorAsync(tx)); // no decision: the SKU's vote was not sent
            Assert.Contains(tx, (await Reader.PaymentsAsync(false, account)).Single().State.Prepared.Keys);
            Assert.Contains(tx, (await Reader.ShipmentsAsync(false, order.OrderId)).Single().State.Prepared.Keys);
            output.WriteLine("prepare held: no answer, no decision; the account and the shipment are prepared");

            await hold.ReleaseAsync();
            Assert.Equal(OrderStatus.Committed, (await placing.WaitAsync(TimeSpan.FromSeconds(20))).Status);
        }
        await WaitCompleted(order.OrderId);
        Assert.Equal(ShipmentStatus.Confirmed.ToString(), (await Shipment(order.OrderId)).Status);
    }

    [Fact]
    public async Task A_held_decision_commit_holds_the_answer_and_phase_two()
    {
        var (sku, account, order, tx) = await NewOrder();
        await using (var hold = await CommitHold.StartAsync(Fixture.Databases.Coordinator, StateNames.Coordinator, tx, "INSERT"))
        {
            var placing = Place(order);
            await hold.WaitUntilWaitingAsync();
            await Task.Delay(Held);

            Assert.False(placing.IsCompleted, "the caller was answered before the decision was durable");
            var stock = (await Reader.InventoryAsync(false, sku)).Single().State;
            var shipment = (await Reader.ShipmentsAsync(false, order.OrderId)).Single().State;
            Assert.Equal((1, 20L), (stock.Prepared.Count, stock.Resource.Committed)); // no commit was sent
            Assert.Equal(ShipmentStatus.None, shipment.Resource.Status);
            Assert.Single(shipment.Prepared);
            Assert.Single((await Reader.PaymentsAsync(false, account)).Single().State.Prepared);
            output.WriteLine("decision held: no answer, every participant still prepared");

            await hold.ReleaseAsync();
            Assert.Equal(OrderStatus.Committed, (await placing.WaitAsync(TimeSpan.FromSeconds(20))).Status);
        }
        await WaitCompleted(order.OrderId);
        Assert.Equal(17, (await Stock(sku)).Committed);
    }

    [Fact]
    public async Task A_held_phase_two_commit_holds_the_acknowledgement_so_the_coordinator_does_not_complete()
    {
        var (_, _, order, tx) = await NewOrder();
        // The shipment's prepare inserts its record; its commit is the first update.
        await using (var hold = await CommitHold.StartAsync(Fixture.Databases.Shipping, StateNames.Shipment, order.OrderId, "UPDATE"))
        {
            // The caller is answered once the decision is durable, not after the acknowledgements.
            Assert.Equal(OrderStatus.Committed, (await Place(order).WaitAsync(TimeSpan.FromSeconds(20))).Status);
            await hold.WaitUntilWaitingAsync();
            await Task.Delay(Held);

            var record = (await Reader.CoordinatorAsync(tx)).Single().State;
            Assert.Equal(Decision.Commit, record.Decision);
            Assert.False(record.IsCompleted, "the coordinator completed before the shipment's commit was durable");
            Assert.Equal(ShipmentStatus.None, (await Reader.ShipmentsAsync(false, order.OrderId)).Single().State.Resource.Status);
            output.WriteLine("shipment commit held: decided, not completed");

            await hold.ReleaseAsync();
            await WaitCompleted(order.OrderId);
        }
        Assert.Equal(ShipmentStatus.Confirmed.ToString(), (await Shipment(order.OrderId)).Status);
    }

    [Fact]
    public async Task An_inquiry_racing_the_order_leaves_one_decision_that_every_answer_agrees_with()
    {
        const int Orders = 12;
        var committed = 0;
        for (var i = 0; i < Orders; i++)
        {
            var (sku, account, order, tx) = await NewOrder();
            var coordinator = Fixture.InsideCluster.GetGrain<ITransactionCoordinatorGrain>(tx);
            // An inquiry answered before the order arrives, or inquiries sent with it or just after: whichever the
            // coordinator takes first decides, and the database holds that one decision.
            var inquiryFirst = i % 3 == 0;
            var inquiries = new List<Task<InquiryReply>>();
            if (inquiryFirst) inquiries.Add(Task.FromResult(await coordinator.QueryOutcome()));
            var placing = Place(order);
            if (!inquiryFirst) await Task.Delay(i % 3 == 1 ? 0 : 5);
            inquiries.Add(coordinator.QueryOutcome());
            inquiries.Add(coordinator.QueryOutcome());

            var outcome = await placing.WaitAsync(TimeSpan.FromSeconds(20));
            var answers = await Task.WhenAll(inquiries).WaitAsync(TimeSpan.FromSeconds(20));
            var record = (await Reader.CoordinatorAsync(tx)).Single().State;
            var durable = record.Decision;
            output.WriteLine($"order {i}: {outcome.Status}, inquiries {string.Join(", ", answers.Select(a => a.Decision))}, durable {durable}{(record.PresumedAbort ? " (presumed)" : "")}");

            Assert.Equal(durable == Decision.Commit ? OrderStatus.Committed : OrderStatus.Aborted, outcome.Status);
            Assert.All(answers.Where(a => a.Decision != InquiryReply.Pending),
                a => Assert.Equal(durable == Decision.Commit ? InquiryReply.Commit : InquiryReply.Abort, a.Decision));
            if (inquiryFirst) Assert.Equal((Decision.Abort, true), (durable, record.PresumedAbort));
            await WaitCompleted(order.OrderId);
            await AssertApplied(sku, account, order.OrderId, durable == Decision.Commit);
            if (durable == Decision.Commit) committed++;
        }
        output.WriteLine($"{committed} of {Orders} committed");
        Assert.InRange(committed, 1, Orders - 1);
    }

    private StoredStateReader Reader => new(Fixture.Databases);

    private async Task<(string Sku, string Account, OrderRequest Order, string Tx)> NewOrder()
    {
        var sku = await NewSku(20);
        var account = await NewAccount(10_000);
        var order = Order(account, (sku, 3, 250));
        return (sku, account, order, TransactionIds.FromOrderId(order.OrderId));
    }

    private async Task AssertApplied(string sku, string account, string orderId, bool committed)
    {
        var stock = await Eventually(() => Stock(sku), s => s.OpenReservations == 0, TimeSpan.FromSeconds(20));
        var balance = await Eventually(() => Balance(account), b => b.OpenReservations == 0, TimeSpan.FromSeconds(20));
        Assert.Equal(committed ? 17 : 20, stock.Committed);
        Assert.Equal(committed ? 10_000 - 750 : 10_000, balance.Committed);
        Assert.Equal(committed, (await Shipment(orderId)).Status == ShipmentStatus.Confirmed.ToString());
    }

    /// <summary>
    /// Holds, at commit, every transaction of <c>database</c> that inserts or updates (<c>operation</c>) the row of one
    /// grain state: a deferred constraint trigger waits on an advisory lock this object holds until released. The
    /// trigger and its function are dropped again on dispose.
    /// </summary>
    private sealed class CommitHold : IAsyncDisposable
    {
        private readonly string _database;
        private readonly string _name;
        private readonly long _lockId;
        private readonly NpgsqlConnection _holder;
        private bool _released;

        private CommitHold(string database, string name, long lockId, NpgsqlConnection holder) =>
            (_database, _name, _lockId, _holder) = (database, name, lockId, holder);

        public static async Task<CommitHold> StartAsync(string database, string stateName, string key, string operation)
        {
            var name = $"hold_{Guid.NewGuid():N}";
            var lockId = Random.Shared.NextInt64(1, long.MaxValue);
            await ExecuteAsync(database, $"""
                CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.state_name = {Literal(stateName)} AND NEW.grain_key = {Literal(key)} THEN PERFORM pg_advisory_xact_lock({lockId}); END IF;
                    RETURN NULL;
                END $$;
                CREATE CONSTRAINT TRIGGER {name} AFTER {operation} ON twopc_grain_state
                    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {name}();
                """);
            var holder = new NpgsqlConnection(database);
            await holder.OpenAsync();
            await using (var take = new NpgsqlCommand($"SELECT pg_advisory_lock({lockId})", holder)) await take.ExecuteNonQueryAsync();
            return new CommitHold(database, name, lockId, holder);
        }

        /// <summary>Until a transaction of the database waits at its commit on this hold.</summary>
        public async Task WaitUntilWaitingAsync()
        {
            var until = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (true)
            {
                await using var connection = new NpgsqlConnection(_database);
                await connection.OpenAsync();
                await using var command = new NpgsqlCommand(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) " +
                    "AND ((classid::bigint << 32) | objid::bigint) = @id", connection);
                command.Parameters.AddWithValue("id", _lockId);
                if ((long)(await command.ExecuteScalarAsync())! > 0) return;
                if (DateTime.UtcNow > until) throw new TimeoutException("no transaction reached the held commit within 10 s");
                await Task.Delay(20);
            }
        }

        public async Task ReleaseAsync()
        {
            if (_released) return;
            _released = true;
            await using var release = new NpgsqlCommand($"SELECT pg_advisory_unlock({_lockId})", _holder);
            await release.ExecuteNonQueryAsync();
        }

        public async ValueTask DisposeAsync()
        {
            await ReleaseAsync();
            await _holder.DisposeAsync();
            await ExecuteAsync(_database, $"DROP TRIGGER {_name} ON twopc_grain_state; DROP FUNCTION {_name}()");
        }

        private static string Literal(string text) => "'" + text.Replace("'", "''", StringComparison.Ordinal) + "'";

        private static async Task ExecuteAsync(string database, string sql)
        {
            await using var connection = new NpgsqlConnection(database);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand(sql, connection);
            await command.ExecuteNonQueryAsync();
        }
    }
}
