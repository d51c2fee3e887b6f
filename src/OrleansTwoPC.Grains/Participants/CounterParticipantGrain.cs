using OrleansTwoPC.Grains.Placement;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;

namespace OrleansTwoPC.Grains.Participants;

/// <summary>A participant holding an escrow counter: the common part of inventory and payment.</summary>
public abstract class CounterParticipantGrain : ParticipantGrain<EscrowCounter, long>
{
    protected CounterParticipantGrain(
        IPersistentState<ParticipantRecord<EscrowCounter, long>> state,
        IOptions<ProtocolOptions> options,
        FaultInjector faults,
        CrashInjector crashes,
        TimeProvider time,
        ILogger logger)
        : base(state, options, faults, crashes, time, logger)
    {
    }

    protected async Task SetCommitted(long value, string what)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(nameof(value), value, $"{what} cannot be negative");
        await EnsureLoaded();
        var reserved = Machine.ReservedWork.Sum();
        if (value < reserved)
            throw new InvalidOperationException($"{ParticipantName}: cannot set {what} to {value}, {reserved} is reserved by open transactions");
        var counter = Machine.Record.Resource;
        counter.SetByAdministrator(value);
        // A failed write makes the grain reload its record, which undoes the change in memory.
        await PersistAdmin($"{what} set to {value}");
    }

    protected async Task<CounterSnapshot> Snapshot()
    {
        await EnsureLoaded();
        var counter = Machine.Record.Resource;
        var reserved = Machine.ReservedWork.Sum();
        return new CounterSnapshot(Key, counter.Exists, counter.Committed, reserved, counter.Committed - reserved,
            Machine.Record.Prepared.Count, counter.ConsumedTotal, LatePreparesRefused, counter.SuppliedTotal);
    }
}

[ServiceRolePlacement(ServiceRoles.Inventory)]
public sealed class InventoryGrain(
    [PersistentState(StateNames.Inventory, StorageNames.Inventory)] IPersistentState<ParticipantRecord<EscrowCounter, long>> state,
    IOptions<ProtocolOptions> options,
    FaultInjector faults,
    CrashInjector crashes,
    TimeProvider time,
    ILogger<InventoryGrain> logger)
    : CounterParticipantGrain(state, options, faults, crashes, time, logger), IInventoryGrain
{
    private static readonly EscrowRules StockRules = new("insufficient stock");

    protected override ParticipantKind Kind => ParticipantKind.Inventory;
    protected override IResourceRules<EscrowCounter, long> Rules => StockRules;

    public Task<VoteReply> Prepare(string transactionId, long quantity, DateTimeOffset deadline) => PrepareCore(transactionId, quantity, deadline);
    public Task SetStock(long onHand) => SetCommitted(onHand, "stock");
    public Task<CounterSnapshot> GetSnapshot() => Snapshot();
}

[ServiceRolePlacement(ServiceRoles.Payment)]
public sealed class PaymentAccountGrain(
    [PersistentState(StateNames.Payment, StorageNames.Payments)] IPersistentState<ParticipantRecord<EscrowCounter, long>> state,
    IOptions<ProtocolOptions> options,
    FaultInjector faults,
    CrashInjector crashes,
    TimeProvider time,
    ILogger<PaymentAccountGrain> logger)
    : CounterParticipantGrain(state, options, faults, crashes, time, logger), IPaymentAccountGrain
{
    private static readonly EscrowRules FundsRules = new("insufficient funds");

    protected override ParticipantKind Kind => ParticipantKind.Payment;
    protected override IResourceRules<EscrowCounter, long> Rules => FundsRules;

    public Task<VoteReply> Prepare(string transactionId, long amount, DateTimeOffset deadline) => PrepareCore(transactionId, amount, deadline);
    public Task SetBalance(long balance) => SetCommitted(balance, "balance");
    public Task<CounterSnapshot> GetSnapshot() => Snapshot();
}
