using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark.Systems;

public enum OrderAttemptKind
{
    /// <summary>Applied in all three services.</summary>
    Committed,

    /// <summary>Refused for lack of stock or funds and applied nowhere: the expected business outcome.</summary>
    Aborted,

    /// <summary>Anything else: an exception, a timeout, an abort for a reason other than stock or funds.</summary>
    Failed,
}

public readonly record struct OrderAttempt(OrderAttemptKind Kind, string? Reason = null)
{
    public static readonly OrderAttempt Committed = new(OrderAttemptKind.Committed);
    public static OrderAttempt Aborted(string reason) => new(OrderAttemptKind.Aborted, reason);
    public static OrderAttempt Failed(string reason) => new(OrderAttemptKind.Failed, reason);
    public static OrderAttempt Failed(Exception exception) => new(OrderAttemptKind.Failed, $"{exception.GetType().Name}: {exception.GetBaseException().Message}");
}

/// <summary>
/// What a system's databases say after a run, for the conservation check: the committed units on hand
/// and balances of the whole catalogue, and the orders of one run that have a shipment.
/// </summary>
public sealed record StoredSnapshot(
    IReadOnlyDictionary<string, long> Stock,
    IReadOnlyDictionary<string, long> Balances,
    IReadOnlySet<string> ShippedOrders);

/// <summary>One of the compared systems: A (this project; A-adonet on Orleans' ADO.NET storage), B (Orleans Transactions), C (one PostgreSQL transaction).</summary>
public interface IOrderSystem : IAsyncDisposable
{
    /// <summary>"A", "A-adonet", "B" or "C".</summary>
    string Id { get; }

    /// <summary>One line for the report.</summary>
    string Description { get; }

    /// <summary>Every database holding this system's state (rows written are summed over them), as the exact
    /// connection strings the system pools its connections under.</summary>
    IReadOnlyList<string> Databases { get; }

    Task StartAsync(CancellationToken cancellationToken);

    /// <summary>Puts the catalogue's stock and balances in place (once, before the first run).</summary>
    Task SeedAsync(Catalogue catalogue, CancellationToken cancellationToken);

    /// <summary>Places one order and classifies the answer. Never throws for an order's failure.</summary>
    Task<OrderAttempt> PlaceAsync(BenchOrder order);

    /// <summary>Waits until no transaction is half-finished in the databases (phase two, confirmations);
    /// false if that did not happen within the timeout.</summary>
    Task<bool> WaitUntilSettledAsync(TimeSpan timeout, CancellationToken cancellationToken);

    /// <summary>Grain activations in the system's silo (null for a system without grains): after a run has settled,
    /// what stays in memory; per-order grains that do not deactivate make it grow run after run.</summary>
    Task<int?> ActivationCountAsync() => Task.FromResult<int?>(null);

    /// <summary>Reads the committed state straight from PostgreSQL.</summary>
    Task<StoredSnapshot> ReadStoredStateAsync(Catalogue catalogue, string orderIdPrefix, CancellationToken cancellationToken);
}
