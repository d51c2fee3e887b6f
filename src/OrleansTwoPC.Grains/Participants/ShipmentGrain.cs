using OrleansTwoPC.Grains.Placement;
using Microsoft.Extensions.Logging;
using Orleans.Concurrency;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Orleans.Storage;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;

namespace OrleansTwoPC.Grains.Participants;

// Reentrant for group commit: see ParticipantGrain.
[ServiceRolePlacement(ServiceRoles.Shipping)]
[Reentrant]
public sealed class ShipmentGrain(
    [FromKeyedServices(StorageNames.Shipping)] IGrainStorage storage,
    IOptions<ProtocolOptions> options,
    FaultInjector faults,
    StepFaultInjector stepFaults,
    CrashInjector crashes,
    TimeProvider time,
    ILogger<ShipmentGrain> logger)
    : ParticipantGrain<ShipmentRecord, ShipmentDetails>(storage, StateNames.Shipment, options, faults, stepFaults, crashes, time, logger), IShipmentGrain
{
    private static readonly ShipmentRules ShipmentRules = new();

    protected override ParticipantKind Kind => ParticipantKind.Shipment;
    protected override bool ServesOneTransaction => true;
    protected override IResourceRules<ShipmentRecord, ShipmentDetails> Rules => ShipmentRules;

    public Task<VoteReply> Prepare(string transactionId, ShipmentRequest shipment, DateTimeOffset deadline)
    {
        if (ParticipantArguments.CheckShipment(shipment) is { } problem) return Task.FromResult(Refuse(transactionId, problem));
        var details = new ShipmentDetails
        {
            OrderId = Key,
            Address = shipment.Address,
            Items = shipment.Lines.Select(l => new ShipmentItem { Sku = l.Sku, Quantity = l.Quantity }).ToList(),
        };
        return PrepareCore(transactionId, details, deadline);
    }

    public Task<ShipmentSnapshot> GetSnapshot() => Read(machine =>
    {
        var record = machine.Record.Resource;
        return new ShipmentSnapshot(Key, record.Status.ToString(), record.Details?.Address, record.TransactionId,
            machine.Record.Prepared.Count > 0, LatePreparesRefused);
    });
}
