using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains.Faults;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Resources;

namespace OrleansTwoPC.Cluster.Tests.Participants;

/// <summary>
/// In-memory state never runs ahead of durable state: at every step kind of every participant, a step that
/// throws after changing the record, or whose write fails, leaves the activation showing exactly what is
/// stored; the same request then succeeds when repeated, and an admin write afterwards stores nothing that
/// was not durable before.
/// </summary>
[Collection(ParticipantDefenceCollection.Name)]
public sealed class FailedStepConsistencyTests(ParticipantDefenceFixture fixture) : ClusterTestBase(fixture)
{
    public enum Failure { ThrowingStep, FailingWrite }

    private readonly ParticipantProbe _probe = new(fixture);

    public static TheoryData<ParticipantKind, StepKind, Failure> Cases()
    {
        var cases = new TheoryData<ParticipantKind, StepKind, Failure>();
        foreach (var kind in new[] { ParticipantKind.Inventory, ParticipantKind.Payment, ParticipantKind.Shipment })
            foreach (var step in new[] { StepKind.Prepare, StepKind.Commit, StepKind.Rollback, StepKind.Resolve, StepKind.Admin })
                foreach (var failure in new[] { Failure.ThrowingStep, Failure.FailingWrite })
                    if (step != StepKind.Admin || kind != ParticipantKind.Shipment) // a shipment has no admin change
                        cases.Add(kind, step, failure);
        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task A_failed_step_leaves_the_activation_equal_to_its_stored_record(ParticipantKind kind, StepKind step, Failure failure)
    {
        var participant = await NewParticipant(kind);
        var grain = _probe.Grain(participant);
        var tx = TransactionIds.FromOrderId(Unique("failstep"));
        var deadline = DateTimeOffset.UtcNow.AddSeconds(5);
        Task<VoteReply> Prepare() => PrepareAt(participant, tx, deadline);

        // What the step acts on is durable first.
        if (step is StepKind.Commit or StepKind.Rollback or StepKind.Resolve) Assert.True((await Prepare()).Yes);
        await _probe.AssertActivationEqualsStored(participant, tx);
        Func<Task> act = step switch
        {
            StepKind.Prepare => Prepare,
            StepKind.Commit => () => grain.Commit(tx, deadline),
            StepKind.Rollback => () => grain.Rollback(tx),
            // The transaction's coordinator never heard of it: the inquiry answers abort.
            StepKind.Resolve => () => grain.ResolveInDoubt(TimeSpan.Zero),
            _ => () => SetCounter(participant, 12_345),
        };

        try
        {
            if (failure == Failure.ThrowingStep) _probe.ThrowAfterNextStep(participant, step);
            else await _probe.FailNextWrite(participant);
            await Assert.ThrowsAnyAsync<Exception>(act);
        }
        finally
        {
            _probe.ClearStepFaults();
        }

        // The activation shows what is stored, not what the failed step made of it in memory ...
        await _probe.AssertActivationEqualsStored(participant, tx);
        var expectedStatus = step is StepKind.Prepare or StepKind.Admin ? "Unknown" : "Prepared";
        Assert.Equal(expectedStatus, await grain.GetTransactionStatus(tx));
        // ... an admin write now stores nothing that was lost ...
        if (kind != ParticipantKind.Shipment)
        {
            await SetCounter(participant, 500);
            await _probe.AssertActivationEqualsStored(participant, tx);
            Assert.Equal(expectedStatus, await grain.GetTransactionStatus(tx));
        }
        // ... and the same request succeeds when repeated.
        await act();
        await _probe.AssertActivationEqualsStored(participant, tx);
        var finalStatus = step switch
        {
            StepKind.Prepare => "Prepared",
            StepKind.Commit => "Committed",
            StepKind.Rollback or StepKind.Resolve => "Aborted",
            _ => "Unknown",
        };
        Assert.Equal(finalStatus, await grain.GetTransactionStatus(tx));
    }

    private async Task<ParticipantId> NewParticipant(ParticipantKind kind) => kind switch
    {
        ParticipantKind.Inventory => new ParticipantId(kind, await NewSku(1_000)),
        ParticipantKind.Payment => new ParticipantId(kind, await NewAccount(1_000)),
        _ => new ParticipantId(kind, Unique("order")),
    };

    private Task<VoteReply> PrepareAt(ParticipantId participant, string tx, DateTimeOffset deadline) => participant.Kind switch
    {
        ParticipantKind.Inventory => Fixture.InsideCluster.GetGrain<IInventoryGrain>(participant.Key).Prepare(tx, 3, deadline),
        ParticipantKind.Payment => Fixture.InsideCluster.GetGrain<IPaymentAccountGrain>(participant.Key).Prepare(tx, 300, deadline),
        _ => Fixture.InsideCluster.GetGrain<IShipmentGrain>(participant.Key).Prepare(tx, new ShipmentRequest("1 Failure Road", [new OrderLine("SKU-F", 3, 100)]), deadline),
    };

    private Task SetCounter(ParticipantId participant, long value) => participant.Kind == ParticipantKind.Inventory
        ? Grains.GetGrain<IInventoryGrain>(participant.Key).SetStock(value)
        : Grains.GetGrain<IPaymentAccountGrain>(participant.Key).SetBalance(value);
}
