using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Checking;

namespace OrleansTwoPC.Client.Tests.Checking;

/// <summary>
/// The checker against a real PostgreSQL: a consistent world passes; each test breaks exactly one thing and
/// expects exactly the violation of the check it names (so removing that check fails the test).
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class InvariantCheckerTests(PostgresFixture postgres)
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    [Fact]
    public async Task Consistent_world_passes_and_is_counted()
    {
        var report = await CheckAsync(World.Consistent(Now));

        Assert.True(report.Ok, report.ToText());
        Assert.Equal(1, report.TransactionsCommitted);
        Assert.Equal(2, report.TransactionsAborted);
        Assert.Equal(0, report.TransactionsInFlight);
        Assert.Equal(2, report.SkusChecked);
        Assert.Equal(1, report.AccountsChecked);
        Assert.Equal(2, report.ShipmentsChecked);
        Assert.Equal(3, report.UnitsSold);
        Assert.Equal(2500, report.MoneyCharged);
    }

    [Fact]
    public async Task I1_confirmed_shipment_without_a_commit_decision()
    {
        var world = World.Consistent(Now);
        world.Shipments["o-9"] = new()
        {
            Resource = new ShipmentRecord { Status = ShipmentStatus.Confirmed, TransactionId = "tx-o-9", Details = World.Details("o-9", ("SKU-A", 1, 100)) },
        };

        var violation = Single(await CheckAsync(world), InvariantCodes.Atomicity);
        Assert.Contains("shipment/o-9", violation.Ids);
        Assert.Contains("tx-o-9", violation.Ids);
        Assert.Contains("no durable commit decision", violation.Message);
    }

    [Fact]
    public async Task I1_participant_tombstone_contradicts_the_decision()
    {
        var world = World.Consistent(Now);
        world.Sku("SKU-A").Decided["tx-o-2"] = World.Tombstone(Decision.Commit, Now.AddMinutes(-59));

        var violation = Single(await CheckAsync(world), InvariantCodes.Atomicity);
        Assert.Equal(["inventory/SKU-A", "tx-o-2"], violation.Ids);
        Assert.Contains("decided Abort", violation.Message);
    }

    [Fact]
    public async Task I1_committed_tombstone_without_any_decision()
    {
        var world = World.Consistent(Now);
        world.Account("acct-1").Decided["tx-o-8"] = World.Tombstone(Decision.Commit, Now.AddMinutes(-30));

        var violation = Single(await CheckAsync(world), InvariantCodes.Atomicity);
        Assert.Equal(["payment/acct-1", "tx-o-8"], violation.Ids);
    }

    [Fact]
    public async Task I1_confirmed_shipment_differs_from_the_order()
    {
        var world = World.Consistent(Now);
        world.Shipment("o-1").Resource.Details = World.Details("o-1", ("SKU-A", 3, 1000), ("SKU-B", 1, 500));

        var violation = Single(await CheckAsync(world), InvariantCodes.Atomicity);
        Assert.Equal(["tx-o-1", "shipment/o-1"], violation.Ids);
        Assert.Contains("SKU-A x3", violation.Message);
    }

    [Fact]
    public async Task I2_counter_books_do_not_balance()
    {
        var world = World.Consistent(Now);
        world.Sku("SKU-B").Resource.SuppliedTotal = 6;

        var violation = Single(await CheckAsync(world), InvariantCodes.Conservation);
        Assert.Equal(["inventory/SKU-B"], violation.Ids);
        Assert.Contains("supplied 6", violation.Message);
    }

    [Fact]
    public async Task I2_stock_consumed_differs_from_committed_orders()
    {
        var world = World.Consistent(Now);
        var counter = world.Sku("SKU-A").Resource;
        counter.Committed -= 1;
        counter.ConsumedTotal += 1; // the books still balance: one unit vanished without an order

        var violation = Single(await CheckAsync(world), InvariantCodes.Conservation);
        Assert.Contains("inventory/SKU-A", violation.Ids);
        Assert.Contains("tx-o-1", violation.Ids);
        Assert.Contains("consumed 3", violation.Message);
    }

    [Fact]
    public async Task I2_money_charged_differs_from_committed_orders()
    {
        var world = World.Consistent(Now);
        var counter = world.Account("acct-1").Resource;
        counter.Committed += 2500;
        counter.ConsumedTotal -= 2500; // as if the committed charge never happened

        var violation = Single(await CheckAsync(world), InvariantCodes.Conservation);
        Assert.Contains("payment/acct-1", violation.Ids);
        Assert.Contains("took 2500", violation.Message);
    }

    [Fact]
    public async Task I2_committed_order_took_from_a_counter_that_does_not_exist()
    {
        var world = World.Consistent(Now);
        world.Inventory.Remove("SKU-B");

        var violation = Single(await CheckAsync(world), InvariantCodes.Conservation);
        Assert.Contains("inventory/SKU-B", violation.Ids);
        Assert.Contains("no record", violation.Message);
    }

    [Fact]
    public async Task I3_negative_stock()
    {
        var world = World.Consistent(Now);
        var counter = world.Sku("SKU-B").Resource;
        counter.Committed = -1;
        counter.SuppliedTotal = 0; // books balance (-1 + 1 == 0) and consumption matches: only I3 is broken

        var violation = Single(await CheckAsync(world), InvariantCodes.NoNegative);
        Assert.Equal(["inventory/SKU-B"], violation.Ids);
        Assert.Contains("negative", violation.Message);
    }

    [Fact]
    public async Task I3_reservations_exceed_committed_stock()
    {
        var world = World.Consistent(Now);
        world.Sku("SKU-B").Prepared["tx-o-5"] = World.Prepared("tx-o-5", 5L, Now.AddSeconds(-1));

        // In flight (young), so I5 tolerates it; the oversell is still reported.
        var violation = Single(await CheckAsync(world, new InvariantCheckOptions { AllowInFlight = TimeSpan.FromMinutes(1) }), InvariantCodes.NoNegative);
        Assert.Equal(["inventory/SKU-B", "tx-o-5"], violation.Ids);
        Assert.Contains("oversold", violation.Message);
    }

    [Fact]
    public async Task I4_committed_transaction_whose_shipment_is_not_confirmed()
    {
        var world = World.Consistent(Now);
        world.Shipment("o-1").Resource.Status = ShipmentStatus.Cancelled;

        var violation = Single(await CheckAsync(world), InvariantCodes.OutcomeApplied);
        Assert.Equal(["tx-o-1", "shipment/o-1"], violation.Ids);
        Assert.Contains("Cancelled", violation.Message);
    }

    [Fact]
    public async Task I4_aborted_transaction_whose_shipment_is_confirmed()
    {
        var world = World.Consistent(Now);
        world.Shipment("o-2").Resource.Status = ShipmentStatus.Confirmed;

        var violation = Single(await CheckAsync(world), InvariantCodes.OutcomeApplied);
        Assert.Equal(["tx-o-2", "shipment/o-2"], violation.Ids);
        Assert.Contains("aborted", violation.Message);
    }

    [Fact]
    public async Task I5_reservation_left_prepared()
    {
        var world = World.Consistent(Now);
        world.Sku("SKU-A").Prepared["tx-o-7"] = World.Prepared("tx-o-7", 3L, Now.AddMinutes(-10));

        var violation = Single(await CheckAsync(world), InvariantCodes.NothingLeftBehind);
        Assert.Equal(["inventory/SKU-A", "tx-o-7"], violation.Ids);
        Assert.Contains("in doubt", violation.Message);
    }

    [Fact]
    public async Task I5_decided_transaction_never_completed()
    {
        var world = World.Consistent(Now);
        var record = world.Transaction("tx-o-1");
        record.CompletedAt = null;
        record.Participants.Single(p => p.Participant == "shipment/o-1").Acknowledged = false;

        var violation = Single(await CheckAsync(world), InvariantCodes.NothingLeftBehind);
        Assert.Equal(["tx-o-1", "shipment/o-1"], violation.Ids);
        Assert.Contains("never completed", violation.Message);
    }

    [Fact]
    public async Task In_flight_commit_is_tolerated_only_when_allowed()
    {
        // tx-o-4 committed a second ago: applied at SKU-A, still prepared at acct-1 and at its shipment.
        var world = World.Consistent(Now);
        var record = world.CommitOrder("o-4", "acct-1", Now.AddSeconds(-1), ("SKU-A", 1, 700));
        record.CompletedAt = null;
        var account = world.Account("acct-1");
        account.Resource.Committed += 700;
        account.Resource.ConsumedTotal -= 700;
        account.Decided.Remove("tx-o-4");
        account.Prepared["tx-o-4"] = World.Prepared("tx-o-4", 700L, Now.AddSeconds(-2));
        var shipment = world.Shipment("o-4");
        shipment.Resource = new ShipmentRecord();
        shipment.Decided.Remove("tx-o-4");
        shipment.Prepared["tx-o-4"] = World.Prepared("tx-o-4", World.Details("o-4", ("SKU-A", 1, 700)), Now.AddSeconds(-2));
        await WriteAsync(world);
        var databases = postgres.Databases;

        var live = await new InvariantChecker(databases, new InvariantCheckOptions { AllowInFlight = TimeSpan.FromMinutes(1) }).CheckAsync();
        Assert.True(live.Ok, live.ToText());
        Assert.Equal(1, live.TransactionsInFlight);

        // Strict: the same state is work left behind (and only that: the unapplied parts are not counted as consumed).
        var strict = await new InvariantChecker(databases).CheckAsync();
        Assert.All(strict.Violations, v => Assert.Equal(InvariantCodes.NothingLeftBehind, v.Code));
        Assert.Equal(3, strict.Violations.Count);
        Assert.Contains(strict.Violations, v => v.Ids.SequenceEqual(["payment/acct-1", "tx-o-4"]) && v.Message.Contains("decided Commit"));
        Assert.Contains(strict.Violations, v => v.Ids.SequenceEqual(["shipment/o-4", "tx-o-4"]));
        Assert.Contains(strict.Violations, v => v.Ids[0] == "tx-o-4");
    }

    [Fact]
    public async Task Scope_leaves_out_other_data()
    {
        var world = World.Consistent(Now);
        world.Seed("OTHER-SKU", 1);
        world.Sku("OTHER-SKU").Resource.Committed = -4;
        world.Shipments["x-1"] = new()
        {
            Resource = new ShipmentRecord { Status = ShipmentStatus.Confirmed, TransactionId = "tx-x-1" },
        };
        await WriteAsync(world);

        var everything = await new InvariantChecker(postgres.Databases).CheckAsync();
        Assert.Contains(everything.Violations, v => v.Ids.Contains("inventory/OTHER-SKU"));
        Assert.Contains(everything.Violations, v => v.Ids.Contains("shipment/x-1"));

        var scoped = await new InvariantChecker(postgres.Databases, new InvariantCheckOptions
        {
            Skus = ["SKU-A", "SKU-B"],
            Accounts = ["acct-1"],
            OrderIdPrefix = "o-",
        }).CheckAsync();
        Assert.True(scoped.Ok, scoped.ToText());
        Assert.Equal(2, scoped.SkusChecked);
        Assert.Equal(2, scoped.ShipmentsChecked);
    }

    [Fact]
    public async Task Wait_until_quiescent_returns_once_the_leftover_is_resolved()
    {
        var world = World.Consistent(Now);
        world.Sku("SKU-A").Prepared["tx-o-7"] = World.Prepared("tx-o-7", 3L, Now.AddMinutes(-10));
        await WriteAsync(world);
        var checker = new InvariantChecker(postgres.Databases);

        // "Recovery" rolls tx-o-7 back a moment later.
        var recovery = Task.Run(async () =>
        {
            await Task.Delay(600);
            var sku = world.Sku("SKU-A");
            sku.Prepared.Clear();
            sku.Decided["tx-o-7"] = World.Tombstone(Decision.Abort, DateTimeOffset.UtcNow);
            await World.WriteStateAsync(postgres.Databases.Inventory, StateNames.Inventory, "SKU-A", sku);
        });

        var report = await checker.WaitUntilQuiescentAsync(TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(100));
        await recovery;
        Assert.True(report.Ok, report.ToText());
        Assert.True(report.ReachedQuiescence);
        Assert.InRange(report.Waited!.Value, TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(15));
    }

    [Fact]
    public async Task Wait_until_quiescent_gives_up_after_the_timeout_and_reports_the_leftover()
    {
        var world = World.Consistent(Now);
        world.Sku("SKU-A").Prepared["tx-o-7"] = World.Prepared("tx-o-7", 3L, Now.AddMinutes(-10));
        await WriteAsync(world);

        var report = await new InvariantChecker(postgres.Databases).WaitUntilQuiescentAsync(TimeSpan.FromMilliseconds(300), TimeSpan.FromMilliseconds(50));

        Assert.False(report.ReachedQuiescence);
        Assert.InRange(report.Waited!.Value, TimeSpan.FromMilliseconds(300), TimeSpan.FromSeconds(10));
        Assert.Equal(["inventory/SKU-A", "tx-o-7"], Single(report, InvariantCodes.NothingLeftBehind).Ids);
    }

    private async Task WriteAsync(World world)
    {
        await postgres.ResetAsync();
        await world.WriteAsync(postgres.Databases);
    }

    private async Task<InvariantReport> CheckAsync(World world, InvariantCheckOptions? options = null)
    {
        await WriteAsync(world);
        return await new InvariantChecker(postgres.Databases, options).CheckAsync();
    }

    /// <summary>The report holds exactly one violation, of the given invariant.</summary>
    private static InvariantViolation Single(InvariantReport report, string code)
    {
        Assert.False(report.Ok, "expected a violation of " + code);
        var violation = Assert.Single(report.Violations);
        Assert.True(violation.Code == code, $"expected {code}, got: {report.ToText()}");
        return violation;
    }
}
