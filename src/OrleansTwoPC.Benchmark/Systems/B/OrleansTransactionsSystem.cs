using OrleansTwoPC.Benchmark.Measurement;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Transactions;
using OrleansTwoPC.Benchmark.Hosting;
using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark.Systems.B;

/// <summary>The three databases of system B, one per service, like A's (B needs no coordinator database).</summary>
public sealed record TransactionalDatabases(string Inventory, string Payments, string Shipping)
{
    public IReadOnlyList<string> All => [Inventory, Payments, Shipping];
}

/// <summary>
/// System B, Orleans Transactions: each order is one transaction created by the caller
/// (<see cref="ITransactionClient.RunTransaction(TransactionOption, Func{Task})"/>) that calls the three
/// participants in parallel. Transactional state goes through the stock ADO.NET grain-storage provider on
/// PostgreSQL, configured as Orleans ships it (default serializer, default transaction options).
/// </summary>
public sealed class OrleansTransactionsSystem(TransactionalDatabases databases, IConfiguration configuration) : IOrderSystem
{
    /// <summary>Parallel seeding transactions (one grain each).</summary>
    private const int SeedingParallelism = 64;

    private IHost? _host;
    private IGrainFactory? _grains;
    private ITransactionClient? _transactions;

    public string Id => "B";
    public string Description => "Orleans Transactions 10.4.2: ITransactionClient.RunTransaction(Create) joining stock, account and shipment grains with ITransactionalState on the ADO.NET PostgreSQL grain storage (3 databases)";
    public IReadOnlyList<string> Databases => databases.All;

    private IGrainFactory Grains => _grains ?? throw new InvalidOperationException("system B is not started");

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _host = BenchmarkSiloHost.Build("bench-b", configuration, IsSystemAGrain, silo =>
        {
            AddStorage(silo, TransactionalStorage.Inventory, databases.Inventory);
            AddStorage(silo, TransactionalStorage.Payments, databases.Payments);
            AddStorage(silo, TransactionalStorage.Shipping, databases.Shipping);
            silo.UseTransactions();
        });
        await _host.StartAsync(cancellationToken);
        _grains = _host.Services.GetRequiredService<IGrainFactory>();
        _transactions = _host.Services.GetRequiredService<ITransactionClient>();
    }

    public async Task SeedAsync(Catalogue catalogue, CancellationToken cancellationToken)
    {
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = SeedingParallelism, CancellationToken = cancellationToken };
        await Parallel.ForEachAsync(catalogue.SeededStock, parallel, async (sku, _) => await Grains.GetGrain<IStockGrain>(sku.Key).Seed(sku.Value));
        await Parallel.ForEachAsync(catalogue.SeededBalances, parallel, async (account, _) => await Grains.GetGrain<IAccountGrain>(account.Key).Seed(account.Value));
    }

    public async Task<OrderAttempt> PlaceAsync(BenchOrder order)
    {
        var transactions = _transactions ?? throw new InvalidOperationException("system B is not started");
        try
        {
            // The three participants in parallel, as A's coordinator prepares them.
            await transactions.RunTransaction(TransactionOption.Create, () => Task.WhenAll(
                Grains.GetGrain<IStockGrain>(order.Sku).Reserve(order.Quantity),
                Grains.GetGrain<IAccountGrain>(order.Account).Debit(order.Amount),
                Grains.GetGrain<IShipmentGrain>(order.OrderId).Create(new ShipmentOrder(order.Account, order.Sku, order.Quantity, order.Amount, order.Address))));
            return OrderAttempt.Committed;
        }
        catch (Exception ex) when (FindRefusal(ex) is { } refusal)
        {
            return OrderAttempt.Aborted(refusal.Message);
        }
        catch (Exception ex)
        {
            return OrderAttempt.Failed(ex);
        }
    }

    public Task<bool> WaitUntilSettledAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var reader = new TransactionalStateReader(databases);
        return Polling.UntilAsync(async ct => await reader.CountPendingAsync(ct) == 0, timeout, cancellationToken);
    }

    public Task<StoredSnapshot> ReadStoredStateAsync(Catalogue catalogue, string orderIdPrefix, CancellationToken cancellationToken) =>
        new TransactionalStateReader(databases).ReadAsync(orderIdPrefix, cancellationToken);

    public async Task<int?> ActivationCountAsync() => await Grains.GetGrain<IManagementGrain>(0).GetTotalActivationCount();

    public async ValueTask DisposeAsync()
    {
        if (_host is null) return;
        try
        {
            await _host.StopAsync(TimeSpan.FromSeconds(10));
        }
        finally
        {
            _host.Dispose();
            _host = null;
        }
    }

    private static void AddStorage(ISiloBuilder silo, string name, string connectionString) =>
        silo.AddAdoNetGrainStorage(name, o =>
        {
            o.Invariant = "Npgsql";
            o.ConnectionString = connectionString;
        });

    /// <summary>The refusal travels as the aborted transaction's cause (possibly wrapped more than once).</summary>
    private static OrderRefusedException? FindRefusal(Exception exception)
    {
        for (Exception? e = exception; e is not null; e = e.InnerException)
        {
            if (e is OrderRefusedException refusal) return refusal;
            if (e is AggregateException aggregate)
                return aggregate.InnerExceptions.Select(FindRefusal).FirstOrDefault(r => r is not null);
        }
        return null;
    }

    private static bool IsSystemAGrain(Type grainClass) => grainClass.Assembly == typeof(OrleansTwoPC.Grains.ParticipantGrains).Assembly;
}
