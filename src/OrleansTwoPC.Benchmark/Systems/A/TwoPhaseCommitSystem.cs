using OrleansTwoPC.Benchmark.Measurement;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OrleansTwoPC.Benchmark.Hosting;
using OrleansTwoPC.Benchmark.Workloads;
using OrleansTwoPC.Silo.Hosting;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Benchmark.Systems.A;

/// <summary>
/// System A, this project: each order is <see cref="ITransactionCoordinatorGrain.PlaceOrder"/> on a silo set
/// up by the product's own <c>AddTwoPhaseCommit</c>, over its four service databases. "A" runs the configured
/// grain storage (the batched default unless <c>--TwoPC:Storage:Provider</c> says otherwise); "A-adonet" the same
/// product on Orleans' ADO.NET provider, on databases of its own, so the storage's gain shows side by side.
/// </summary>
public sealed class TwoPhaseCommitSystem : IOrderSystem
{
    public const string AdoNetId = "A-adonet";

    private readonly ServiceDatabases databases;
    private readonly IConfiguration configuration;

    public TwoPhaseCommitSystem(string id, ServiceDatabases databases, IConfiguration configuration)
    {
        Id = id;
        this.databases = databases;
        this.configuration = id == AdoNetId
            ? new ConfigurationBuilder().AddConfiguration(configuration)
                .AddInMemoryCollection(new Dictionary<string, string?> { [TwoPhaseCommitSiloExtensions.StorageProviderKey] = "adonet" }).Build()
            : configuration;
    }

    /// <summary>Parallel seeding calls; each is one durable grain write.</summary>
    private const int SeedingParallelism = 64;

    private IHost? _host;
    private IGrainFactory? _grains;

    public string Id { get; }

    public string Description =>
        "OrleansTwoPC: TransactionCoordinatorGrain.PlaceOrder, 2PC with presumed abort over inventory, payment and shipment grains " +
        $"(product hosting, 4 databases, {TwoPhaseCommitSiloExtensions.StorageProvider(configuration)} grain storage)";
    public IReadOnlyList<string> Databases => databases.All.Select(d => d.Value).ToList();
    public IGrainFactory Grains => _grains ?? throw new InvalidOperationException("system A is not started");

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _host = BenchmarkSiloHost.Build("bench-" + Id.ToLowerInvariant(), configuration, IsSystemBGrain, silo => silo.AddTwoPhaseCommit(databases, configuration));
        await _host.StartAsync(cancellationToken);
        _grains = _host.Services.GetRequiredService<IGrainFactory>();
    }

    public async Task SeedAsync(Catalogue catalogue, CancellationToken cancellationToken)
    {
        var parallel = new ParallelOptions { MaxDegreeOfParallelism = SeedingParallelism, CancellationToken = cancellationToken };
        await Parallel.ForEachAsync(catalogue.SeededStock, parallel, async (sku, _) => await Grains.GetGrain<IInventoryGrain>(sku.Key).SetStock(sku.Value));
        await Parallel.ForEachAsync(catalogue.SeededBalances, parallel, async (account, _) => await Grains.GetGrain<IPaymentAccountGrain>(account.Key).SetBalance(account.Value));
    }

    public async Task<OrderAttempt> PlaceAsync(BenchOrder order)
    {
        var request = new OrderRequest(order.OrderId, [new OrderLine(order.Sku, order.Quantity, order.UnitPrice)], order.Account, order.Address);
        try
        {
            var outcome = await Grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(order.OrderId)).PlaceOrder(request);
            return outcome.Status switch
            {
                OrderStatus.Committed => OrderAttempt.Committed,
                OrderStatus.Aborted when IsBusinessRefusal(outcome.Reason) => OrderAttempt.Aborted(outcome.Reason!),
                _ => OrderAttempt.Failed($"{outcome.Status}: {outcome.Reason}"),
            };
        }
        catch (Exception ex)
        {
            return OrderAttempt.Failed(ex);
        }
    }

    public Task<bool> WaitUntilSettledAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var reader = new TwoPhaseCommitStateReader(databases);
        return Polling.UntilAsync(async ct => await reader.CountOpenReservationsAsync(ct) == 0, timeout, cancellationToken);
    }

    public Task<StoredSnapshot> ReadStoredStateAsync(Catalogue catalogue, string orderIdPrefix, CancellationToken cancellationToken) =>
        new TwoPhaseCommitStateReader(databases).ReadAsync(orderIdPrefix, cancellationToken);

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

    /// <summary>The coordinator names the participant and its words: "... insufficient stock: requested 3, available 0".</summary>
    private static bool IsBusinessRefusal(string? reason) =>
        reason is not null && (reason.Contains("insufficient stock", StringComparison.Ordinal) || reason.Contains("insufficient funds", StringComparison.Ordinal));

    private static bool IsSystemBGrain(Type grainClass) => grainClass.Namespace?.StartsWith(typeof(B.StockGrain).Namespace!, StringComparison.Ordinal) == true;
}
