using Orleans.Concurrency;
using Orleans.Transactions.Abstractions;

namespace OrleansTwoPC.Benchmark.Systems.B;

// [Reentrant] as in Orleans' own transaction samples: a transaction waiting for this grain's
// transactional lock must not keep the activation's turn, or the lock holder's prepare and
// commit messages would queue behind it.

[Reentrant]
public sealed class StockGrain(
    [TransactionalState(TransactionalStorage.StockState, TransactionalStorage.Inventory)] ITransactionalState<StockState> stock)
    : Grain, IStockGrain
{
    public Task Seed(long units) => stock.PerformUpdate(s =>
    {
        s.Exists = true;
        s.OnHand = units;
        s.Sold = 0;
    });

    public Task Reserve(int quantity) => stock.PerformUpdate(s =>
    {
        if (!s.Exists) throw new OrderRefusedException($"unknown SKU {this.GetPrimaryKeyString()}");
        if (s.OnHand < quantity) throw new OrderRefusedException($"insufficient stock: requested {quantity}, available {s.OnHand}");
        s.OnHand -= quantity;
        s.Sold += quantity;
    });
}

[Reentrant]
public sealed class AccountGrain(
    [TransactionalState(TransactionalStorage.AccountState, TransactionalStorage.Payments)] ITransactionalState<AccountState> account)
    : Grain, IAccountGrain
{
    public Task Seed(long balance) => account.PerformUpdate(a =>
    {
        a.Exists = true;
        a.Balance = balance;
        a.Spent = 0;
    });

    public Task Debit(long amount) => account.PerformUpdate(a =>
    {
        if (!a.Exists) throw new OrderRefusedException($"unknown account {this.GetPrimaryKeyString()}");
        if (a.Balance < amount) throw new OrderRefusedException($"insufficient funds: requested {amount}, available {a.Balance}");
        a.Balance -= amount;
        a.Spent += amount;
    });
}

[Reentrant]
public sealed class ShipmentGrain(
    [TransactionalState(TransactionalStorage.ShipmentState, TransactionalStorage.Shipping)] ITransactionalState<ShipmentState> shipment)
    : Grain, IShipmentGrain
{
    public Task Create(ShipmentOrder order) => shipment.PerformUpdate(s =>
    {
        if (s.Exists) throw new InvalidOperationException($"order {this.GetPrimaryKeyString()} already has a shipment");
        s.Exists = true;
        s.Account = order.Account;
        s.Sku = order.Sku;
        s.Quantity = order.Quantity;
        s.Amount = order.Amount;
        s.Address = order.Address;
    });
}
