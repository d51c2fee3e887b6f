namespace OrleansTwoPC.Protocol.Participant;

/// <summary>Reasons of a no vote that the coordinator acts on, not just reports.</summary>
public static class Refusals
{
    /// <summary>
    /// The resource (SKU, account) was never created. The coordinator turns this vote into a rejection of
    /// the order instead of an abort: nothing is decided or recorded, as if the order had been refused
    /// before any prepare.
    /// </summary>
    public const string UnknownResource = "unknown resource";
}
