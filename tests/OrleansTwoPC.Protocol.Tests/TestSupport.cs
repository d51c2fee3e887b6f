using System.Text.Json;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;

namespace OrleansTwoPC.Protocol.Tests;

/// <summary>Shared fixtures: a fixed clock origin, options with round numbers, and durable-copy helpers.</summary>
internal static class TestSupport
{
    public static readonly DateTimeOffset T0 = new(2025, 1, 1, 12, 0, 0, TimeSpan.Zero);

    public static readonly ParticipantId Sku = new(ParticipantKind.Inventory, "SKU-1");
    public static readonly ParticipantId Account = new(ParticipantKind.Payment, "ACC-1");
    public static readonly ParticipantId Shipment = new(ParticipantKind.Shipment, "ORDER-1");
    public static readonly ParticipantId[] Three = { Sku, Account, Shipment };

    public static ProtocolOptions Options() => new()
    {
        PrepareTimeout = TimeSpan.FromSeconds(5),
        RetryBaseDelay = TimeSpan.FromMilliseconds(100),
        RetryMaxDelay = TimeSpan.FromSeconds(10),
        DecisionRetention = TimeSpan.FromHours(1),
        InDoubtTimeout = TimeSpan.FromSeconds(30),
    };

    private static readonly JsonSerializerOptions Json = new() { IncludeFields = false };

    /// <summary>What storage would hand back after a write and a read: a deep copy through JSON.</summary>
    public static T Durable<T>(T value) => JsonSerializer.Deserialize<T>(JsonSerializer.Serialize(value, Json), Json)!;

    public static ParticipantMachine<EscrowCounter, long> Counter(long committed, TimeSpan? retention = null, string shortage = "insufficient stock")
    {
        var record = new ParticipantRecord<EscrowCounter, long> { Resource = new EscrowCounter { Exists = true, Committed = committed } };
        return new ParticipantMachine<EscrowCounter, long>(new EscrowRules(shortage), record, retention ?? TimeSpan.FromHours(1));
    }

    public static T Only<T>(this IReadOnlyList<CoordinatorAction> actions) where T : CoordinatorAction
    {
        Assert.Single(actions);
        return Assert.IsType<T>(actions[0]);
    }
}
