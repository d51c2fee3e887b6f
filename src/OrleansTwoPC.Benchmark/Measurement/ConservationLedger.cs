using OrleansTwoPC.Benchmark.Systems;
using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark.Measurement;

/// <summary>What one run's check found: the shipments read back and the orders whose caller saw a failure but that applied.</summary>
public sealed record ConservationResult(int Shipments, int FailedButApplied, IReadOnlyList<string> Violations)
{
    public bool Ok => Violations.Count == 0;
}

/// <summary>
/// Keeps, per system, what every applied order took out of each SKU and account since seeding, and checks
/// each run against the state read back from PostgreSQL:
/// <list type="bullet">
/// <item>an order answered committed has a shipment; an order answered aborted has none; every shipment
/// belongs to an order of the run (committed orders = shipments, less failures that applied anyway);</item>
/// <item>per SKU, units sold (by shipped orders) + units on hand = units seeded, never below zero;</item>
/// <item>per account, money spent (by shipped orders) + balance = money seeded, never below zero.</item>
/// </list>
/// The shipment is the order's witness: an order whose caller saw an error (timeout, in doubt) may still
/// have applied, and then it must have applied everywhere.
/// </summary>
public sealed class ConservationLedger(Catalogue catalogue)
{
    private const int MaxViolationsListed = 20;

    private readonly Dictionary<string, long> _unitsSold = new(StringComparer.Ordinal);
    private readonly Dictionary<string, long> _moneySpent = new(StringComparer.Ordinal);

    public long ShippedOrders { get; private set; }

    public ConservationResult Check(IReadOnlyCollection<PlacedOrder> runOrders, StoredSnapshot stored, bool settled)
    {
        var violations = new List<string>();
        void Violation(string text)
        {
            if (violations.Count < MaxViolationsListed) violations.Add(text);
            else if (violations.Count == MaxViolationsListed) violations.Add("... (more violations not listed)");
        }

        if (!settled) Violation("transactions were still half-finished in the databases long after the run (prepared, never applied)");

        var byId = runOrders.ToDictionary(o => o.Order.OrderId, StringComparer.Ordinal);
        foreach (var orderId in stored.ShippedOrders)
        {
            if (!byId.ContainsKey(orderId)) Violation($"shipment {orderId} belongs to no order of this run");
        }
        var failedButApplied = 0;
        foreach (var placed in runOrders)
        {
            var shipped = stored.ShippedOrders.Contains(placed.Order.OrderId);
            switch (placed.Attempt.Kind)
            {
                case OrderAttemptKind.Committed when !shipped:
                    Violation($"order {placed.Order.OrderId} was answered committed but has no shipment");
                    break;
                case OrderAttemptKind.Aborted when shipped:
                    Violation($"order {placed.Order.OrderId} was answered aborted ({placed.Attempt.Reason}) but has a shipment");
                    break;
                case OrderAttemptKind.Failed when shipped:
                    failedButApplied++;
                    break;
            }
            if (!shipped) continue;
            _unitsSold[placed.Order.Sku] = _unitsSold.GetValueOrDefault(placed.Order.Sku) + placed.Order.Quantity;
            _moneySpent[placed.Order.Account] = _moneySpent.GetValueOrDefault(placed.Order.Account) + placed.Order.Amount;
        }
        ShippedOrders += stored.ShippedOrders.Count;

        CheckCounters("SKU", "units", catalogue.SeededStock, stored.Stock, _unitsSold, Violation);
        CheckCounters("account", "money", catalogue.SeededBalances, stored.Balances, _moneySpent, Violation);
        return new ConservationResult(stored.ShippedOrders.Count, failedButApplied, violations);
    }

    private static void CheckCounters(string what, string unit, IReadOnlyDictionary<string, long> seeded, IReadOnlyDictionary<string, long> stored,
        IReadOnlyDictionary<string, long> takenOut, Action<string> violation)
    {
        long seededTotal = 0, remainingTotal = 0, takenTotal = 0;
        foreach (var (key, initial) in seeded)
        {
            var taken = takenOut.GetValueOrDefault(key);
            seededTotal += initial;
            takenTotal += taken;
            if (!stored.TryGetValue(key, out var remaining))
            {
                violation($"{what} {key} is missing from the database");
                continue;
            }
            remainingTotal += remaining;
            if (remaining < 0) violation($"{what} {key}: negative {unit} {remaining}");
            if (remaining + taken != initial)
                violation($"{what} {key}: {unit} remaining {remaining} + taken by shipped orders {taken} != seeded {initial}");
        }
        if (stored.Count != seeded.Count)
            violation($"{stored.Count} {what}s in the database, {seeded.Count} seeded");
        if (remainingTotal + takenTotal != seededTotal)
            violation($"all {what}s: {unit} remaining {remainingTotal} + taken {takenTotal} != seeded {seededTotal}");
    }
}
