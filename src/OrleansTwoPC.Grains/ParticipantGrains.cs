using OrleansTwoPC.Protocol;

namespace OrleansTwoPC.Grains;

public static class ParticipantGrains
{
    /// <summary>The grain that is this participant (its phase-two and recovery interface).</summary>
    public static ITransactionParticipantGrain Participant(this IGrainFactory grains, ParticipantId participant) => participant.Kind switch
    {
        ParticipantKind.Inventory => grains.GetGrain<IInventoryGrain>(participant.Key),
        ParticipantKind.Payment => grains.GetGrain<IPaymentAccountGrain>(participant.Key),
        ParticipantKind.Shipment => grains.GetGrain<IShipmentGrain>(participant.Key),
        _ => throw new ArgumentOutOfRangeException(nameof(participant), participant.Kind, "unknown participant kind"),
    };
}
