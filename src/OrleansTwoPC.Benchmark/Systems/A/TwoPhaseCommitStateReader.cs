using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Benchmark.Systems.A;

/// <summary>Reads system A's committed state from its service databases with the product's own record types.</summary>
public sealed class TwoPhaseCommitStateReader(ServiceDatabases databases)
{
    private readonly StoredStateReader _reader = new(databases);

    /// <summary>Participants holding a prepared (undecided or not yet applied) transaction.</summary>
    public async Task<int> CountOpenReservationsAsync(CancellationToken cancellationToken) =>
        (await _reader.InventoryAsync(withPreparedOnly: true, cancellationToken: cancellationToken)).Count
        + (await _reader.PaymentsAsync(withPreparedOnly: true, cancellationToken: cancellationToken)).Count
        + (await _reader.ShipmentsAsync(withPreparedOnly: true, cancellationToken: cancellationToken)).Count;

    public async Task<StoredSnapshot> ReadAsync(string orderIdPrefix, CancellationToken cancellationToken)
    {
        var stock = (await _reader.InventoryAsync(false, cancellationToken: cancellationToken))
            .Where(s => s.State.Resource.Exists)
            .ToDictionary(s => s.Key, s => s.State.Resource.Committed, StringComparer.Ordinal);
        var balances = (await _reader.PaymentsAsync(false, cancellationToken: cancellationToken))
            .Where(s => s.State.Resource.Exists)
            .ToDictionary(s => s.Key, s => s.State.Resource.Committed, StringComparer.Ordinal);
        return new StoredSnapshot(stock, balances, await ConfirmedShipmentsAsync(orderIdPrefix, cancellationToken));
    }

    /// <summary>Order ids of the run with a confirmed shipment (the shipment grain's key is the order id), from
    /// whichever grain storage the system writes.</summary>
    private async Task<IReadOnlySet<string>> ConfirmedShipmentsAsync(string orderIdPrefix, CancellationToken cancellationToken) =>
        (await _reader.ShipmentsAsync(false, cancellationToken: cancellationToken))
            .Where(s => s.Key.StartsWith(orderIdPrefix, StringComparison.Ordinal) && s.State.Resource.Status == ShipmentStatus.Confirmed)
            .Select(s => s.Key)
            .ToHashSet(StringComparer.Ordinal);
}
