namespace OrleansTwoPC.Silo.Demo;

/// <summary>What was seeded before a run: units per SKU and money per account.</summary>
public sealed record Catalogue(IReadOnlyDictionary<string, long> Stock, IReadOnlyDictionary<string, long> Balances)
{
    public async Task SeedAsync(IGrainFactory grains)
    {
        await Task.WhenAll(Stock.Select(s => grains.GetGrain<IInventoryGrain>(s.Key).SetStock(s.Value)));
        await Task.WhenAll(Balances.Select(a => grains.GetGrain<IPaymentAccountGrain>(a.Key).SetBalance(a.Value)));
    }
}

public sealed record ReconciliationReport(IReadOnlyList<string> Lines, IReadOnlyList<string> Violations)
{
    public bool Ok => Violations.Count == 0;
}

/// <summary>
/// Checks a finished run against the services' committed state: every order all-or-nothing, stock and
/// money conserved, no oversell, no negative balance, no reservation left open. Call it on a freshly
/// seeded catalogue that only this run touched.
/// </summary>
public static class Reconciliation
{
    public static async Task<ReconciliationReport> CheckAsync(IGrainFactory grains, Catalogue catalogue, IReadOnlyList<OrderResult> results, TimeSpan settle)
    {
        var lines = new List<string>();
        var violations = new List<string>();

        // Phase two runs after the callers got their answers: wait until every reservation is released or consumed.
        var deadline = DateTime.UtcNow + settle;
        Dictionary<string, CounterSnapshot> stock, accounts;
        while (true)
        {
            stock = await SnapshotAll(catalogue.Stock.Keys, k => grains.GetGrain<IInventoryGrain>(k).GetSnapshot());
            accounts = await SnapshotAll(catalogue.Balances.Keys, k => grains.GetGrain<IPaymentAccountGrain>(k).GetSnapshot());
            if (stock.Values.Concat(accounts.Values).All(s => s.OpenReservations == 0) || DateTime.UtcNow > deadline) break;
            await Task.Delay(100);
        }

        var shipments = await SnapshotAll(results.Select(r => r.Order.OrderId), k => grains.GetGrain<IShipmentGrain>(k).GetSnapshot());
        var applied = new List<OrderResult>();
        foreach (var result in results)
        {
            var shipment = shipments[result.Order.OrderId];
            var confirmed = shipment.Status == "Confirmed";
            if (shipment.TentativeOpen) violations.Add($"order {result.Order.OrderId}: tentative shipment still open");
            switch (result.Outcome?.Status)
            {
                case OrderStatus.Committed when !confirmed:
                    violations.Add($"order {result.Order.OrderId}: reported committed but shipment is {shipment.Status}");
                    break;
                case OrderStatus.Aborted or OrderStatus.Rejected when confirmed:
                    violations.Add($"order {result.Order.OrderId}: reported {result.Outcome!.Status} but shipment is confirmed");
                    break;
            }
            // The shipment is the order's witness in the shipping service; the counters must agree with it.
            if (confirmed) applied.Add(result);
        }

        long totalUnits = 0, totalMoney = 0;
        foreach (var (sku, initial) in catalogue.Stock)
        {
            var s = stock[sku];
            var sold = applied.SelectMany(r => r.Order.Lines).Where(l => l.Sku == sku).Sum(l => (long)l.Quantity);
            totalUnits += sold;
            lines.Add($"  {sku,-12} initial {initial,6}  on hand {s.Committed,6}  sold {sold,6}  reserved {s.Reserved}");
            if (s.Committed < 0) violations.Add($"{sku}: negative stock {s.Committed}");
            if (s.Committed + sold != initial) violations.Add($"{sku}: on hand {s.Committed} + sold {sold} != initial {initial}");
            if (s.ConsumedTotal != sold) violations.Add($"{sku}: inventory consumed {s.ConsumedTotal} but confirmed shipments hold {sold}");
            if (s.OpenReservations != 0) violations.Add($"{sku}: {s.OpenReservations} reservations left open");
        }
        foreach (var (account, initial) in catalogue.Balances)
        {
            var a = accounts[account];
            var charged = applied.Where(r => r.Order.AccountId == account).Sum(r => r.Order.Lines.Sum(l => l.Quantity * l.UnitPrice));
            totalMoney += charged;
            if (a.Committed < 0) violations.Add($"{account}: negative balance {a.Committed}");
            if (a.Committed + charged != initial) violations.Add($"{account}: balance {a.Committed} + charged {charged} != initial {initial}");
            if (a.ConsumedTotal != charged) violations.Add($"{account}: payments debited {a.ConsumedTotal} but confirmed shipments total {charged}");
            if (a.OpenReservations != 0) violations.Add($"{account}: {a.OpenReservations} holds left open");
        }
        lines.Add($"  accounts: {catalogue.Balances.Count}, initial money {catalogue.Balances.Values.Sum()}, charged {totalMoney}, " +
                  $"balances now {accounts.Values.Sum(a => a.Committed)}");
        lines.Add($"  orders applied in all three services: {applied.Count}, units sold {totalUnits}");
        return new ReconciliationReport(lines, violations);
    }

    private static async Task<Dictionary<string, T>> SnapshotAll<T>(IEnumerable<string> keys, Func<string, Task<T>> read)
    {
        var distinct = keys.Distinct().ToList();
        var values = await Task.WhenAll(distinct.Select(read));
        return distinct.Zip(values).ToDictionary(p => p.First, p => p.Second);
    }
}
