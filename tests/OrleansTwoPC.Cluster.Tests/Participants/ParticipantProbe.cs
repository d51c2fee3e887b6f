using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using Orleans.TestingHost;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;

namespace OrleansTwoPC.Cluster.Tests.Participants;

/// <summary>
/// Compares what a participant activation shows (its snapshot and a transaction's status) with the record
/// its storage holds, and injects failures into its steps and writes.
/// </summary>
public sealed class ParticipantProbe(TwoPcClusterFixture fixture)
{
    private IGrainStorage Storage(ParticipantKind kind) => ((InProcessSiloHandle)fixture.Cluster.Silos[0]).SiloHost.Services
        .GetRequiredKeyedService<IGrainStorage>(kind switch
        {
            ParticipantKind.Inventory => StorageNames.Inventory,
            ParticipantKind.Payment => StorageNames.Payments,
            _ => StorageNames.Shipping,
        });

    private static string StateName(ParticipantKind kind) => kind switch
    {
        ParticipantKind.Inventory => StateNames.Inventory,
        ParticipantKind.Payment => StateNames.Payment,
        _ => StateNames.Shipment,
    };

    public ITransactionParticipantGrain Grain(ParticipantId participant) => fixture.InsideCluster.Participant(participant);

    private GrainId GrainIdOf(ParticipantId participant) => fixture.Grains.Participant(participant).GetGrainId();

    /// <summary>The record as stored (an empty record when no row exists), and whether a row exists.</summary>
    public async Task<(ParticipantRecord<TResource, TWork> Record, bool Exists)> Stored<TResource, TWork>(ParticipantId participant) where TResource : new()
    {
        var state = new GrainState<ParticipantRecord<TResource, TWork>>();
        await Storage(participant.Kind).ReadStateAsync(StateName(participant.Kind), GrainIdOf(participant), state);
        return (state.State ?? new ParticipantRecord<TResource, TWork>(), state.RecordExists);
    }

    /// <summary>
    /// Writes the stored record back unchanged, behind the activation's back: the activation's next write
    /// fails with a version conflict (an insert conflict when no row existed), as a write lost to a storage
    /// fault would. The record itself stays what it was.
    /// </summary>
    public async Task FailNextWrite(ParticipantId participant)
    {
        var storage = Storage(participant.Kind);
        var grainId = GrainIdOf(participant);
        var name = StateName(participant.Kind);
        if (participant.Kind == ParticipantKind.Shipment) await Bump<ShipmentRecord, ShipmentDetails>(storage, name, grainId);
        else await Bump<EscrowCounter, long>(storage, name, grainId);
    }

    private static async Task Bump<TResource, TWork>(IGrainStorage storage, string name, GrainId grainId) where TResource : new()
    {
        var state = new GrainState<ParticipantRecord<TResource, TWork>>();
        await storage.ReadStateAsync(name, grainId, state);
        state.State ??= new ParticipantRecord<TResource, TWork>();
        await storage.WriteStateAsync(name, grainId, state);
    }

    /// <summary>Stores <paramref name="record"/> for a participant that is not active yet, as an older version could have.</summary>
    public async Task WriteStored<TResource, TWork>(ParticipantId participant, ParticipantRecord<TResource, TWork> record) where TResource : new()
    {
        var storage = Storage(participant.Kind);
        var grainId = GrainIdOf(participant);
        var name = StateName(participant.Kind);
        var state = new GrainState<ParticipantRecord<TResource, TWork>>();
        await storage.ReadStateAsync(name, grainId, state);
        state.State = record;
        await storage.WriteStateAsync(name, grainId, state);
    }

    /// <summary>Arms the step fault on every silo (the activation may live on any of them).</summary>
    public void ThrowAfterNextStep(ParticipantId participant, StepKind kind)
    {
        foreach (var injector in StepFaults()) injector.ThrowAfterNextStep(participant.ToString(), kind);
    }

    public void ClearStepFaults()
    {
        foreach (var injector in StepFaults()) injector.Clear();
    }

    private IEnumerable<StepFaultInjector> StepFaults() => fixture.Cluster.Silos
        .OfType<InProcessSiloHandle>()
        .Select(s => s.SiloHost.Services.GetRequiredService<StepFaultInjector>());

    /// <summary>Asserts that the activation shows exactly what is stored, for the resource and for <paramref name="transactionId"/>.</summary>
    public async Task AssertActivationEqualsStored(ParticipantId participant, string transactionId)
    {
        var status = await fixture.Grains.Participant(participant).GetTransactionStatus(transactionId);
        if (participant.Kind == ParticipantKind.Shipment)
        {
            var view = await fixture.Grains.GetGrain<IShipmentGrain>(participant.Key).GetSnapshot();
            var (stored, _) = await Stored<ShipmentRecord, ShipmentDetails>(participant);
            Assert.Equal(
                (stored.Resource.Status.ToString(), stored.Resource.Details?.Address, stored.Resource.TransactionId, stored.Prepared.Count > 0, StatusOf(stored, transactionId)),
                (view.Status, view.Address, view.TransactionId, view.TentativeOpen, status));
        }
        else
        {
            var view = participant.Kind == ParticipantKind.Inventory
                ? await fixture.Grains.GetGrain<IInventoryGrain>(participant.Key).GetSnapshot()
                : await fixture.Grains.GetGrain<IPaymentAccountGrain>(participant.Key).GetSnapshot();
            var (stored, _) = await Stored<EscrowCounter, long>(participant);
            var counter = stored.Resource;
            Assert.Equal(
                (counter.Exists, counter.Committed, stored.Prepared.Values.Sum(p => p.Work), stored.Prepared.Count, counter.ConsumedTotal, counter.SuppliedTotal, StatusOf(stored, transactionId)),
                (view.Exists, view.Committed, view.Reserved, view.OpenReservations, view.ConsumedTotal, view.SuppliedTotal, status));
        }
    }

    private static string StatusOf<TResource, TWork>(ParticipantRecord<TResource, TWork> record, string transactionId) where TResource : new()
    {
        if (record.Prepared.ContainsKey(transactionId)) return ParticipantTransactionStatus.Prepared.ToString();
        if (record.Decided.TryGetValue(transactionId, out var decided))
            return (decided.Outcome == Decision.Commit ? ParticipantTransactionStatus.Committed : ParticipantTransactionStatus.Aborted).ToString();
        return ParticipantTransactionStatus.Unknown.ToString();
    }
}

/// <summary>
/// A cluster of its own for the participant-defence tests: they prepare, commit and roll back on
/// participants directly, as a coordinator would but without coordinator records, which the invariant
/// checks of the shared cluster's tests would rightly report.
/// </summary>
public sealed class ParticipantDefenceFixture : TwoPcClusterFixture
{
    protected override string Name => "defence";

    // These tests drive participants step by step as their coordinator would; recovery settling a prepared
    // participant in the background (after 4 s on a busy machine) would race their assertions.
    protected override TimeSpan InDoubtTimeout => TimeSpan.FromMinutes(5);

    // The silos' start sweeps (the follow-up comes 2 s after the first) would settle them at once.
    protected override bool AwaitStartSweeps => true;
}

[CollectionDefinition(Name)]
public sealed class ParticipantDefenceCollection : ICollectionFixture<ParticipantDefenceFixture>
{
    public const string Name = "participant defences";
}
