using CsCheck;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using Orleans.TestingHost;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Grains;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;

namespace OrleansTwoPC.Cluster.Tests.Performance;

[Collection(ShortMemoryCollection.Name)]
public sealed class BatchedStorageProviderContractTests(ShortMemoryClusterFixture fixture) : StorageProviderContractTestsBase(fixture);

[Collection(ShortMemoryAdoNetCollection.Name)]
public sealed class AdoNetStorageProviderContractTests(ShortMemoryAdoNetClusterFixture fixture) : StorageProviderContractTestsBase(fixture);

/// <summary>
/// What the grains rely on from their grain storage, checked on both providers as the silo registers them (with
/// the error wrapper): a first write is an insert that a second insert cannot repeat (the coordinator's and the
/// shipment's unread first writes depend on it), a stale version changes nothing, clear keeps the row, and every
/// generated id is its own row. A participant record (split into rows by the batched storage) and a coordinator
/// record (one row) both.
/// </summary>
public abstract class StorageProviderContractTestsBase(TwoPcClusterFixture fixture) : ClusterTestBase(fixture)
{
    private IGrainStorage Storage(string name) =>
        Fixture.Cluster.Silos.OfType<InProcessSiloHandle>().First().SiloHost.Services.GetRequiredKeyedService<IGrainStorage>(name);

    private static ParticipantRecord<EscrowCounter, long> Account(long balance, string? preparedTx = null, string? decidedTx = null)
    {
        var now = DateTimeOffset.UtcNow;
        var record = new ParticipantRecord<EscrowCounter, long> { Resource = new EscrowCounter { Exists = true, Committed = balance, SuppliedTotal = balance } };
        if (preparedTx is not null) record.Prepared[preparedTx] = new PreparedTransaction<long> { Work = 5, Coordinator = preparedTx, PreparedAt = now, Deadline = now.AddSeconds(2) };
        if (decidedTx is not null) record.Decided[decidedTx] = new DecidedTransaction { Outcome = Decision.Commit, DecidedAt = now, Deadline = now, KeepUntil = now.AddSeconds(30) };
        return record;
    }

    [Fact]
    public async Task A_first_write_inserts_and_a_second_insert_of_the_same_grain_is_refused()
    {
        var storage = Storage(StorageNames.Payments);
        var grain = Grains.GetGrain<IPaymentAccountGrain>(Unique("acct")).GetGrainId();
        var first = new GrainState<ParticipantRecord<EscrowCounter, long>>(Account(100, preparedTx: "tx-" + Unique("p")));
        await storage.WriteStateAsync(StateNames.Payment, grain, first);
        Assert.True(first.RecordExists);

        var second = new GrainState<ParticipantRecord<EscrowCounter, long>>(Account(999));
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateNames.Payment, grain, second));

        var read = new GrainState<ParticipantRecord<EscrowCounter, long>>();
        await storage.ReadStateAsync(StateNames.Payment, grain, read);
        Assert.Equal((first.ETag, true, 100L), (read.ETag, read.RecordExists, read.State!.Resource.Committed));
        Assert.Equal(first.State!.Prepared.Keys, read.State.Prepared.Keys);
    }

    [Fact]
    public async Task A_stale_version_changes_nothing_and_the_current_one_writes()
    {
        var storage = Storage(StorageNames.Payments);
        var grain = Grains.GetGrain<IPaymentAccountGrain>(Unique("acct")).GetGrainId();
        var tx = "tx-" + Unique("d");
        var state = new GrainState<ParticipantRecord<EscrowCounter, long>>(Account(100, preparedTx: tx));
        await storage.WriteStateAsync(StateNames.Payment, grain, state);
        var staleTag = state.ETag;
        state.State = Account(95, decidedTx: tx);
        await storage.WriteStateAsync(StateNames.Payment, grain, state);

        var stale = new GrainState<ParticipantRecord<EscrowCounter, long>>(Account(1)) { ETag = staleTag };
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateNames.Payment, grain, stale));

        var read = new GrainState<ParticipantRecord<EscrowCounter, long>>();
        await storage.ReadStateAsync(StateNames.Payment, grain, read);
        Assert.Equal((state.ETag, 95L), (read.ETag, read.State!.Resource.Committed));
        Assert.Empty(read.State.Prepared);
        Assert.Equal(Decision.Commit, read.State.Decided[tx].Outcome);
    }

    [Fact]
    public async Task Clear_keeps_the_row_so_an_insert_after_it_is_still_refused()
    {
        var storage = Storage(StorageNames.Coordinator);
        var grain = Grains.GetGrain<ITransactionCoordinatorGrain>("tx-" + Unique("c")).GetGrainId();
        var state = new GrainState<CoordinatorRecord>(new CoordinatorRecord { TransactionId = grain.Key.ToString()!, Decision = Decision.Abort, PresumedAbort = true });
        await storage.WriteStateAsync(StateNames.Coordinator, grain, state);
        await storage.ClearStateAsync(StateNames.Coordinator, grain, state);
        Assert.False(state.RecordExists);

        await Assert.ThrowsAsync<InconsistentStateException>(() =>
            storage.WriteStateAsync(StateNames.Coordinator, grain, new GrainState<CoordinatorRecord>(new CoordinatorRecord { Decision = Decision.Commit })));
        var read = new GrainState<CoordinatorRecord>();
        await storage.ReadStateAsync(StateNames.Coordinator, grain, read);
        Assert.False(read.RecordExists);
        Assert.Equal(Decision.None, read.State!.Decision);
    }

    [Fact]
    public async Task Every_generated_id_is_its_own_row()
    {
        var storage = Storage(StorageNames.Payments);
        var families = GeneratedIds.Families.Array[2, 4].Single();
        var ids = families.SelectMany(f => f).Distinct(StringComparer.Ordinal).ToList();
        for (var i = 0; i < ids.Count; i++)
            await storage.WriteStateAsync(StateNames.Payment, Grains.GetGrain<IPaymentAccountGrain>(ids[i]).GetGrainId(),
                new GrainState<ParticipantRecord<EscrowCounter, long>>(Account(1_000 + i)));
        for (var i = 0; i < ids.Count; i++)
        {
            var read = new GrainState<ParticipantRecord<EscrowCounter, long>>();
            await storage.ReadStateAsync(StateNames.Payment, Grains.GetGrain<IPaymentAccountGrain>(ids[i]).GetGrainId(), read);
            Assert.True(read.State!.Resource.Committed == 1_000 + i, $"id '{ids[i]}' read {read.State!.Resource.Committed}, wrote {1_000 + i}");
        }
    }
}
