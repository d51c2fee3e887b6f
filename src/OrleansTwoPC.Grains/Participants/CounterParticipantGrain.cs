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

/// <summary>A participant holding an escrow counter: the common part of inventory and payment.</summary>
public abstract class CounterParticipantGrain : ParticipantGrain<EscrowCounter, long>
{
    protected CounterParticipantGrain(
        IGrainStorage storage,
        string stateName,
        IOptions<ProtocolOptions> options,
        FaultInjector faults,
        StepFaultInjector stepFaults,
        CrashInjector crashes,
        TimeProvider time,
        ILogger logger)
        : base(storage, stateName, options, faults, stepFaults, crashes, time, logger)
    {
    }

    protected Task SetCommitted(long value, string what)
    {
        if (value < 0) throw new ArgumentOutOfRangeException(nameof(value), value, $"{what} cannot be negative");
        return ChangeAdministratively(machine =>
        {
            var counter = machine.Record.Resource;
            if (counter.CheckSetByAdministrator(value) is { } problem) return $"cannot set {what} to {value}: {problem}";
            // Reservations whose prepare is still being written count too: they may already have voted yes.
            var reserved = machine.ReservedWork.Sum();
            if (value < reserved) return $"cannot set {what} to {value}, {reserved} is reserved by open transactions";
            counter.SetByAdministrator(value);
            return null;
        }, $"{what} set to {value}");
    }

    protected Task<CounterSnapshot> Snapshot() => Read(machine =>
    {
        var counter = machine.Record.Resource;
        var reserved = machine.ReservedWork.Sum();
        return new CounterSnapshot(Key, counter.Exists, counter.Committed, reserved, counter.Committed - reserved,
            machine.Record.Prepared.Count, counter.ConsumedTotal, LatePreparesRefused, counter.SuppliedTotal);
    });
}

// Reentrant for group commit: see ParticipantGrain.
[ServiceRolePlacement(ServiceRoles.Inventory)]
[Reentrant]
public sealed class InventoryGrain(
    [FromKeyedServices(StorageNames.Inventory)] IGrainStorage storage,
    IOptions<ProtocolOptions> options,
    FaultInjector faults,
    StepFaultInjector stepFaults,
    CrashInjector crashes,
    TimeProvider time,
    ILogger<InventoryGrain> logger)
    : CounterParticipantGrain(storage, StateNames.Inventory, options, faults, stepFaults, crashes, time, logger), IInventoryGrain
{
    private static readonly EscrowRules StockRules = new("insufficient stock");

    protected override ParticipantKind Kind => ParticipantKind.Inventory;
    protected override IResourceRules<EscrowCounter, long> Rules => StockRules;

    public Task<VoteReply> Prepare(string transactionId, long quantity, DateTimeOffset deadline) => PrepareCore(transactionId, quantity, deadline);
    public Task SetStock(long onHand) => SetCommitted(onHand, "stock");
    public Task<CounterSnapshot> GetSnapshot() => Snapshot();
}

// Reentrant for group commit: see ParticipantGrain.
[ServiceRolePlacement(ServiceRoles.Payment)]
[Reentrant]
public sealed class PaymentAccountGrain(
    [FromKeyedServices(StorageNames.Payments)] IGrainStorage storage,
    IOptions<ProtocolOptions> options,
    FaultInjector faults,
    StepFaultInjector stepFaults,
    CrashInjector crashes,
    TimeProvider time,
    ILogger<PaymentAccountGrain> logger)
    : CounterParticipantGrain(storage, StateNames.Payment, options, faults, stepFaults, crashes, time, logger), IPaymentAccountGrain
{
    private static readonly EscrowRules FundsRules = new("insufficient funds");

    protected override ParticipantKind Kind => ParticipantKind.Payment;
    protected override IResourceRules<EscrowCounter, long> Rules => FundsRules;

    public Task<VoteReply> Prepare(string transactionId, long amount, DateTimeOffset deadline) => PrepareCore(transactionId, amount, deadline);
    public Task SetBalance(long balance) => SetCommitted(balance, "balance");
    public Task<CounterSnapshot> GetSnapshot() => Snapshot();
}
