using System.Text.Json;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using static OrleansTwoPC.Protocol.Tests.TestSupport;

namespace OrleansTwoPC.Protocol.Tests;

/// <summary>
/// What the participant grain's group commit needs from the machine: a snapshot of the record that later
/// steps cannot change while it is being written, and the vote of a prepare re-checked once its write is
/// durable (other transactions' steps ran meanwhile).
/// </summary>
public sealed class GroupCommitSupportTests
{
    private const string T1 = "tx-1";
    private const string T2 = "tx-2";
    private static readonly DateTimeOffset D1 = T0.AddSeconds(5);

    private static string Json<T>(T value) => JsonSerializer.Serialize(value);

    // ---------------------------------------------------------------- snapshot

    [Fact]
    public void CopyRecord_OfACounter_IsEqualToTheRecord_AndUnchangedByLaterSteps()
    {
        var machine = Counter(10);
        machine.Record.Resource.SetByAdministrator(20);
        machine.Prepare(T1, "coord-1", 3, D1, T0);
        machine.Prepare(T2, "coord-2", 4, D1, T0);
        machine.Commit(T2, T0.AddSeconds(1));
        machine.Rollback("tx-never", T0.AddSeconds(1));

        var copy = machine.CopyRecord();
        var written = Json(copy);
        Assert.Equal(Json(machine.Record), written);

        // The machine goes on while the copy is being written: the copy must not move.
        machine.Commit(T1, T0.AddSeconds(2));
        machine.Prepare("tx-3", "coord-3", 5, D1, T0.AddSeconds(2));
        machine.Record.Resource.SetByAdministrator(50);
        Assert.Equal(written, Json(copy));
        Assert.NotEqual(written, Json(machine.Record));
    }

    [Fact]
    public void CopyRecord_OfAShipment_CopiesTheDetailsDeeply()
    {
        var machine = new ParticipantMachine<ShipmentRecord, ShipmentDetails>(new ShipmentRules(), null, TimeSpan.FromHours(1));
        var details = new ShipmentDetails { OrderId = "O-1", Address = "1 Main St", Items = { new ShipmentItem { Sku = "RED", Quantity = 2 } } };
        machine.Prepare(T1, T1, details, D1, T0);

        var prepared = machine.CopyRecord();
        Assert.Equal(Json(machine.Record), Json(prepared));
        Assert.NotSame(details, prepared.Prepared[T1].Work);

        machine.Commit(T1, T0.AddSeconds(1));
        var committed = machine.CopyRecord();
        var written = Json(committed);
        Assert.Equal(Json(machine.Record), written);
        Assert.NotSame(machine.Record.Resource.Details, committed.Resource.Details);

        details.Items[0].Quantity = 99;
        details.Items.Add(new ShipmentItem { Sku = "BLUE", Quantity = 1 });
        machine.Record.Resource.Status = ShipmentStatus.Cancelled;
        Assert.Equal(written, Json(committed));
        Assert.Equal(2, prepared.Prepared[T1].Work.Items[0].Quantity);
    }

    [Fact]
    public void CopyRecord_OfAnEmptyMachine_IsAnEmptyRecord()
    {
        var copy = Counter(0).CopyRecord();
        Assert.Empty(copy.Prepared);
        Assert.Empty(copy.Decided);
        Assert.True(copy.Resource.Exists);
    }

    // ---------------------------------------------------------------- the vote after the write

    [Fact]
    public void ConfirmYes_StillPrepared_IsYes()
    {
        var machine = Counter(10);
        machine.Prepare(T1, T1, 3, D1, T0);

        Assert.Equal(new PrepareResult(PrepareCase.AlreadyPrepared, Vote.Yes, null), machine.ConfirmYes(T1, D1));
    }

    [Fact]
    public void ConfirmYes_RolledBackWhileTheWriteWasInFlight_IsNo_AndTheMachineStaysConsistent()
    {
        var machine = Counter(10);
        machine.Prepare(T1, T1, 3, D1, T0);
        // The coordinator timed out and aborted; its rollback was applied before the prepare's write returned.
        machine.Rollback(T1, T0.AddSeconds(6));

        var vote = machine.ConfirmYes(T1, D1);

        Assert.Equal(Vote.No, vote.Vote);
        Assert.Contains("rolled back", vote.Reason);
        Assert.Empty(machine.ReservedWork);
        Assert.Equal(ParticipantTransactionStatus.Aborted, machine.StatusOf(T1));
        Assert.Equal(10, machine.Record.Resource.Committed);
    }

    [Fact]
    public void ConfirmYes_CommittedSameAttempt_IsYes_OtherAttemptOrForgotten_IsNo()
    {
        var machine = Counter(10);
        machine.Prepare(T1, T1, 3, D1, T0);
        machine.Commit(T1, T0.AddSeconds(1), D1);
        Assert.Equal(Vote.Yes, machine.ConfirmYes(T1, D1).Vote);
        Assert.Equal(PrepareCase.OtherAttempt, machine.ConfirmYes(T1, D1.AddSeconds(3)).Case);

        machine.Prepare(T2, T2, 3, D1.AddSeconds(3), T0);
        Assert.Equal((PrepareCase.OtherAttempt, Vote.No), (machine.ConfirmYes(T2, D1).Case, machine.ConfirmYes(T2, D1).Vote));

        Assert.Equal(Vote.No, machine.ConfirmYes("tx-unknown", D1).Vote);
        Assert.Equal("reservation dropped here while its prepare was being written", machine.ConfirmYes("tx-unknown", D1).Reason);
    }
}
