using System.Text.Json;
using Npgsql;
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

    /// <summary>Order ids of the run with a confirmed shipment (the shipment grain's key is the order id).</summary>
    private async Task<IReadOnlySet<string>> ConfirmedShipmentsAsync(string orderIdPrefix, CancellationToken cancellationToken)
    {
        await using var connection = new NpgsqlConnection(databases.Shipping);
        await connection.OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(
            "SELECT grainidextensionstring, payloadbinary FROM orleansstorage " +
            "WHERE graintypestring = @state AND payloadbinary IS NOT NULL AND starts_with(grainidextensionstring, @prefix)", connection);
        command.Parameters.AddWithValue("state", StateNames.Shipment);
        command.Parameters.AddWithValue("prefix", orderIdPrefix);
        var shipped = new HashSet<string>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var record = JsonSerializer.Deserialize<ParticipantRecord<ShipmentRecord, ShipmentDetails>>((byte[])reader.GetValue(1), StateJson.Options);
            if (record?.Resource.Status == ShipmentStatus.Confirmed) shipped.Add(reader.GetString(0));
        }
        return shipped;
    }
}
