using System.Numerics;
using System.Text.Json;
using CsCheck;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Checking;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Client.Tests.Checking;

/// <summary>
/// The checker's totals with stored values near <see cref="long.MaxValue"/>: every sum (units sold, money
/// charged, what committed transactions took, what open reservations hold) is exact, never wrapped and never
/// an overflow exception. Expected values are computed with <see cref="BigInteger"/>.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class CheckerTotalsTests(PostgresFixture postgres)
{
    private static readonly DateTimeOffset Now = DateTimeOffset.UtcNow;

    /// <summary>A counter whose books balance: consumed near the top of the long range, supply still a long.</summary>
    private static readonly Gen<(long Committed, long Consumed)> BigCounter =
        Gen.Long[long.MaxValue / 4, long.MaxValue].SelectMany(consumed =>
            Gen.Long[0, long.MaxValue - consumed].Select(committed => (committed, consumed)));

    [Fact]
    public void Units_sold_and_money_charged_are_exact_beyond_the_long_range()
    {
        Gen.Select(BigCounter.List[1, 6], BigCounter.List[1, 6]).Sample((skus, accounts) =>
        {
            var world = new BigWorld();
            var skuIds = skus.Select((c, i) => world.Counter(world.Inventory, Id("sku", i), c.Committed, c.Consumed)).ToList();
            var accountIds = accounts.Select((c, i) => world.Counter(world.Payments, Id("acct", i), c.Committed, c.Consumed)).ToList();
            // Consumption behind the counters is not checkable without order summaries: one committed
            // transaction without one touches them all (the checker notes it instead of judging it).
            world.CommittedWithoutSummary("tx-o-1", "o-1", skuIds, accountIds);

            var report = InvariantChecker.Evaluate(world.Snapshot());

            var sold = skus.Aggregate(BigInteger.Zero, (sum, c) => sum + c.Consumed);
            var charged = accounts.Aggregate(BigInteger.Zero, (sum, c) => sum + c.Consumed);
            Assert.True(report.Ok, report.ToText());
            Assert.Equal(sold, (BigInteger)report.UnitsSold);
            Assert.Equal(charged, (BigInteger)report.MoneyCharged);
            Assert.Contains($"units sold {sold}, money charged {charged}", report.ToText());
        });
    }

    [Fact]
    public void Consumption_is_compared_with_the_exact_sum_of_what_committed_transactions_took()
    {
        var gen = Gen.Select(Gen.Long[long.MaxValue / 4, long.MaxValue].List[1, 4], Gen.Long[0, long.MaxValue], Gen.Bool);
        gen.Sample((amounts, other, consumeTheSum) =>
        {
            var took = amounts.Aggregate(BigInteger.Zero, (sum, a) => sum + a);
            // When the sum fits a long the account may have consumed exactly that; otherwise no stored value can match.
            var consumed = consumeTheSum && took <= long.MaxValue ? (long)took : other;
            var world = new BigWorld();
            world.Counter(world.Payments, "acct-1", 0, consumed);
            for (var i = 0; i < amounts.Count; i++)
            {
                world.CommittedOrder($"tx-o-{i}", $"o-{i}", "acct-1", amounts[i]);
            }

            var report = InvariantChecker.Evaluate(world.Snapshot());

            var violations = report.Of(InvariantCodes.Conservation);
            if (consumed == took)
            {
                Assert.True(report.Ok, report.ToText());
            }
            else
            {
                var violation = Assert.Single(violations);
                Assert.Contains($"consumed {consumed} but the committed transactions applied here took {took} ", violation.Message);
            }
        });
    }

    [Fact]
    public void Open_reservations_are_added_up_exactly_and_oversell_is_reported()
    {
        var gen = Gen.Select(Gen.Long[1, long.MaxValue].List[1, 5], Gen.Long[0, long.MaxValue]);
        gen.Sample((reservations, committed) =>
        {
            var world = new BigWorld();
            var sku = world.Counter(world.Inventory, "sku-1", committed, 0);
            for (var i = 0; i < reservations.Count; i++)
            {
                world.Inventory[sku].Prepared[$"tx-p-{i}"] = new PreparedTransaction<long>
                {
                    Work = reservations[i],
                    Coordinator = $"tx-p-{i}",
                    PreparedAt = Now,
                    Deadline = Now.AddSeconds(5),
                };
            }

            // The reservations are young and tolerated as in flight: only I3 can be broken.
            var report = InvariantChecker.Evaluate(world.Snapshot(), new InvariantCheckOptions { AllowInFlight = TimeSpan.FromHours(1) });

            var reserved = reservations.Aggregate(BigInteger.Zero, (sum, r) => sum + r);
            if (reserved <= committed)
            {
                Assert.True(report.Ok, report.ToText());
            }
            else
            {
                var violation = Assert.Single(report.Violations);
                Assert.Equal(InvariantCodes.NoNegative, violation.Code);
                Assert.Contains($"oversold, {reserved} reserved by {reservations.Count} open transaction", violation.Message);
                Assert.Contains($"only {committed} committed", violation.Message);
            }
        });
    }

    [Fact]
    public void A_shipment_is_compared_with_the_exact_sum_of_the_ordered_lines()
    {
        Gen.Long[long.MaxValue / 2, long.MaxValue].List[2, 3].Sample(quantities =>
        {
            var world = new BigWorld();
            world.Counter(world.Inventory, "sku-1", 0, 0);
            world.Counter(world.Payments, "acct-1", 0, 0);
            var record = world.CommittedOrder("tx-o-1", "o-1", "acct-1", 0);
            record.Order!.Lines = quantities.Select(q => new OrderSummaryLine { Sku = "sku-1", Quantity = q }).ToList();
            world.Shipments["o-1"].Resource.Details!.Items = [new ShipmentItem { Sku = "sku-1", Quantity = 1 }];

            var report = InvariantChecker.Evaluate(world.Snapshot());

            var ordered = quantities.Aggregate(BigInteger.Zero, (sum, q) => sum + q);
            var atomicity = Assert.Single(report.Of(InvariantCodes.Atomicity));
            Assert.Contains($"ships [sku-1 x1] but the order has [sku-1 x{ordered}]", atomicity.Message);
            var conservation = Assert.Single(report.Of(InvariantCodes.Conservation));
            Assert.Contains($"took {ordered} ", conservation.Message);
        });
    }

    [Fact]
    public async Task Tpc_check_prints_the_exact_totals_of_stock_near_the_long_range()
    {
        await postgres.ResetAsync();
        var (committed, consumed) = (12_345L, long.MaxValue - 12_345L);
        var world = World.Consistent(Now);
        var skus = Enumerable.Range(0, 3).Select(i => Id("big-sku", i)).ToList();
        foreach (var sku in skus)
        {
            world.Seed(sku, 0);
            world.Sku(sku).Resource.SuppliedTotal = committed + consumed;
            world.Sku(sku).Resource.Committed = committed;
            world.Sku(sku).Resource.ConsumedTotal = consumed;
        }

        await world.WriteAsync(postgres.Databases);
        var settings = new[] { $"--ConnectionStrings:PostgresServer={postgres.AdminConnectionString}", $"--TwoPC:DatabasePrefix={PostgresFixture.Prefix}" };
        var scope = skus.SelectMany(s => new[] { "--sku", s }).ToArray();

        var text = await Tpc.RunAsync(["check", .. scope, .. settings]);
        var json = await Tpc.RunAsync(["check", "--json", .. scope, .. settings]);

        var sold = 3 * new BigInteger(consumed);
        // No transaction took these units (the rows were written directly): I2 says so, with exact numbers.
        Assert.Equal(1, text.ExitCode);
        Assert.Contains($"units sold {sold}, money charged 2500", text.Out);
        Assert.DoesNotContain("units sold -", text.Out);
        using var document = JsonDocument.Parse(json.Out);
        Assert.Equal(sold.ToString(), document.RootElement.GetProperty("unitsSold").GetRawText());
    }

    private static string Id(string kind, int index) => $"{kind}-{Guid.NewGuid():N}"[..(kind.Length + 9)] + index;

    /// <summary>Grain state in memory, handed to the pure <see cref="InvariantChecker.Evaluate"/>.</summary>
    private sealed class BigWorld
    {
        public Dictionary<string, ParticipantRecord<EscrowCounter, long>> Inventory { get; } = new(StringComparer.Ordinal);
        public Dictionary<string, ParticipantRecord<EscrowCounter, long>> Payments { get; } = new(StringComparer.Ordinal);
        public Dictionary<string, ParticipantRecord<ShipmentRecord, ShipmentDetails>> Shipments { get; } = new(StringComparer.Ordinal);
        public Dictionary<string, CoordinatorRecord> Coordinators { get; } = new(StringComparer.Ordinal);

        public string Counter(Dictionary<string, ParticipantRecord<EscrowCounter, long>> counters, string key, long committed, long consumed)
        {
            counters[key] = new ParticipantRecord<EscrowCounter, long>
            {
                Resource = new EscrowCounter { Exists = true, Committed = committed, ConsumedTotal = consumed, SuppliedTotal = committed + consumed },
            };
            return key;
        }

        public void CommittedWithoutSummary(string tx, string orderId, IEnumerable<string> skus, IEnumerable<string> accounts)
        {
            var record = Decided(tx, orderId);
            record.Participants = skus.Select(s => $"inventory/{s}").Concat(accounts.Select(a => $"payment/{a}")).Append($"shipment/{orderId}")
                .Select(p => new ParticipantEntry { Participant = p, Vote = Vote.Yes, Source = VoteSource.Voted, Acknowledged = true })
                .ToList();
        }

        public CoordinatorRecord CommittedOrder(string tx, string orderId, string account, long amount)
        {
            var record = Decided(tx, orderId);
            record.Order = new OrderSummary { OrderId = orderId, AccountId = account, Amount = amount, Lines = [] };
            return record;
        }

        public InvariantSnapshot Snapshot() => new(
            Now,
            Inventory.Select(kv => Stored(kv.Key, kv.Value)).ToList(),
            Payments.Select(kv => Stored(kv.Key, kv.Value)).ToList(),
            Shipments.Select(kv => Stored(kv.Key, kv.Value)).ToList(),
            Coordinators.Select(kv => Stored(kv.Key, kv.Value)).ToList());

        private CoordinatorRecord Decided(string tx, string orderId)
        {
            var at = Now.AddHours(-1);
            var record = new CoordinatorRecord
            {
                TransactionId = tx,
                Decision = Decision.Commit,
                StartedAt = at,
                DecidedAt = at,
                CompletedAt = at,
            };
            Coordinators[tx] = record;
            Shipments[orderId] = new ParticipantRecord<ShipmentRecord, ShipmentDetails>
            {
                Resource = new ShipmentRecord { Status = ShipmentStatus.Confirmed, TransactionId = tx, ChangedAt = at, Details = new ShipmentDetails { OrderId = orderId, Address = "1 Main St" } },
            };
            return record;
        }

        private static StoredState<T> Stored<T>(string key, T state) => new(key, state, 1, Now);
    }
}
