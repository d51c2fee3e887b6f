using OrleansTwoPC.Grains.Placement;
using OrleansTwoPC.Protocol;

namespace OrleansTwoPC.Grains.Recovery;

/// <summary>A prepared participant as a service reports it (its kind is the service's).</summary>
[GenerateSerializer, Immutable, Alias("twopc.PreparedEntry")]
public sealed record PreparedEntry(
    [property: Id(0)] string Key,
    [property: Id(1)] string TransactionId,
    [property: Id(2)] string Coordinator,
    [property: Id(3)] DateTimeOffset PreparedAt);

/// <summary>
/// One per participant service (key 0), placed on that service's silos: it answers recovery's and operators'
/// questions about the service's participants from the service's own database, so no other silo needs that
/// database's credentials.
/// </summary>
[Alias("twopc.IServiceRecoveryGrain")]
public interface IServiceRecoveryGrain : IGrainWithIntegerKey
{
    Task<IReadOnlyList<PreparedEntry>> Prepared(TimeSpan olderThan, string? transactionId);

    Task<IReadOnlyList<TimelineEvent>> Events(string transactionId, IReadOnlyList<string> keys, bool findOthers);
}

[Alias("twopc.IInventoryRecoveryGrain")]
public interface IInventoryRecoveryGrain : IServiceRecoveryGrain;

[Alias("twopc.IPaymentRecoveryGrain")]
public interface IPaymentRecoveryGrain : IServiceRecoveryGrain;

[Alias("twopc.IShipmentRecoveryGrain")]
public interface IShipmentRecoveryGrain : IServiceRecoveryGrain;

public static class ServiceRecovery
{
    /// <summary>The recovery grain of <paramref name="kind"/>'s service.</summary>
    public static IServiceRecoveryGrain For(IGrainFactory grains, ParticipantKind kind) => kind switch
    {
        ParticipantKind.Inventory => grains.GetGrain<IInventoryRecoveryGrain>(0),
        ParticipantKind.Payment => grains.GetGrain<IPaymentRecoveryGrain>(0),
        ParticipantKind.Shipment => grains.GetGrain<IShipmentRecoveryGrain>(0),
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown participant kind"),
    };

    public static readonly IReadOnlyList<ParticipantKind> Kinds = [ParticipantKind.Inventory, ParticipantKind.Payment, ParticipantKind.Shipment];
}

/// <summary>The shared body: a silo of the service reads its own database (never asks on, which could loop).</summary>
public abstract class ServiceRecoveryGrain(ParticipantKind kind, IRecoveryCatalog catalog) : Grain, IServiceRecoveryGrain
{
    public async Task<IReadOnlyList<PreparedEntry>> Prepared(TimeSpan olderThan, string? transactionId)
    {
        RequireLocal();
        return (await catalog.PreparedParticipantsAsync(kind, olderThan, transactionId))
            .Select(p => new PreparedEntry(p.Participant.Key, p.TransactionId, p.Coordinator, p.PreparedAt)).ToList();
    }

    public Task<IReadOnlyList<TimelineEvent>> Events(string transactionId, IReadOnlyList<string> keys, bool findOthers)
    {
        RequireLocal();
        return catalog.ParticipantEventsAsync(kind, transactionId, keys, findOthers);
    }

    private void RequireLocal()
    {
        if (!catalog.Reads(kind))
            throw new InvalidOperationException($"this silo hosts the {kind} service but holds no credentials for its database");
    }
}

[ServiceRolePlacement(ServiceRoles.Inventory)]
public sealed class InventoryRecoveryGrain(IRecoveryCatalog catalog) : ServiceRecoveryGrain(ParticipantKind.Inventory, catalog), IInventoryRecoveryGrain;

[ServiceRolePlacement(ServiceRoles.Payment)]
public sealed class PaymentRecoveryGrain(IRecoveryCatalog catalog) : ServiceRecoveryGrain(ParticipantKind.Payment, catalog), IPaymentRecoveryGrain;

[ServiceRolePlacement(ServiceRoles.Shipping)]
public sealed class ShipmentRecoveryGrain(IRecoveryCatalog catalog) : ServiceRecoveryGrain(ParticipantKind.Shipment, catalog), IShipmentRecoveryGrain;
