using System.Globalization;
using Orleans.Serialization.Serializers;
using Orleans.Storage;
using OrleansTwoPC.Storage.Batching;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// Orleans grain storage over <see cref="BatchedStateWriter"/> (<c>TwoPC:Storage:Provider=batched</c>): the writes of
/// all grains of one service database share batched, prepared statements. The row is the grain's state name and
/// its full string key as given (no numeric parsing, so no <see cref="DistinctKeyGrainStorage"/> needed); the ETag
/// is the row's version; a version mismatch is Orleans' <see cref="InconsistentStateException"/>, and a write whose
/// batch failed surfaces as <see cref="StateWriteOutcomeUnknownException"/> (the grain reloads). Participant records
/// are stored split (<see cref="BatchedStateStore"/>, <see cref="ParticipantRecordLayout{TResource,TWork}"/>): a
/// small head row plus a row per prepared transaction and tombstone, and a write sends only what changed; they are
/// written with the compact JSON of <c>StateJson</c> whatever <paramref name="serializer"/> is, which reads them back.
/// </summary>
public sealed class BatchedGrainStorage(string name, BatchedStateWriter writer, IGrainStorageSerializer serializer, IActivatorProvider activators)
    : IGrainStorage, ILifecycleParticipant<ISiloLifecycle>
{
    public const string ProviderName = "batched";

    private readonly BatchedStateStore store = new(writer);

    public async Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        // The state object is the store's key for what its entry rows hold.
        var stored = await store.ReadAsync<T>(stateName, KeyOf(grainId), grainState);
        grainState.ETag = stored is null ? null : Tag(stored.Version);
        grainState.RecordExists = stored?.Payload is not null;
        grainState.State = stored?.Payload is { } payload ? serializer.Deserialize<T>(new BinaryData(payload)) : activators.GetActivator<T>().Create();
    }

    public async Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        try
        {
            var version = await store.WriteAsync(stateName, KeyOf(grainId), grainState.State, Expected(grainState.ETag, stateName, grainId), grainState,
                state => serializer.Serialize(state).ToArray());
            grainState.ETag = Tag(version);
            grainState.RecordExists = true;
        }
        catch (StateVersionConflictException ex)
        {
            // No inner exception: callers across the wire (tpc, applications) do not have the storage assembly.
            throw new InconsistentStateException(ex.Message, null, grainState.ETag);
        }
    }

    public async Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        try
        {
            var version = await store.ClearAsync<T>(stateName, KeyOf(grainId), Expected(grainState.ETag, stateName, grainId), grainState);
            grainState.ETag = version == 0 ? null : Tag(version);
            grainState.RecordExists = false;
            grainState.State = activators.GetActivator<T>().Create();
        }
        catch (StateVersionConflictException ex)
        {
            // No inner exception: callers across the wire (tpc, applications) do not have the storage assembly.
            throw new InconsistentStateException(ex.Message, null, grainState.ETag);
        }
    }

    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe($"{nameof(BatchedGrainStorage)}-{name}", ServiceLifecycleStage.ApplicationServices, RefuseStateOfTheOtherProviderAsync, StopAsync);

    /// <summary>
    /// Switching providers does not move state: grains would no longer see what the ADO.NET provider wrote (prepared
    /// transactions included), so a database that holds such state is refused at start.
    /// </summary>
    private async Task RefuseStateOfTheOtherProviderAsync(CancellationToken cancellationToken)
    {
        if (await writer.HoldsAdoNetStateAsync(cancellationToken))
            throw new SiloStartupException(
                $"{name} storage: TwoPC:Storage:Provider=batched, but the database holds grain state written by the adonet provider " +
                "(table orleansstorage); state is not migrated between providers, so start with TwoPC:Storage:Provider=adonet");
    }

    // Flushes what is queued; grains have deactivated by the time application services stop.
    private async Task StopAsync(CancellationToken cancellationToken) => await writer.DisposeAsync();

    private static string KeyOf(GrainId grainId) => grainId.Key.ToString()!;

    private static string Tag(int version) => version.ToString(CultureInfo.InvariantCulture);

    private static int Expected(string? etag, string stateName, GrainId grainId) =>
        etag is null ? 0
        : int.TryParse(etag, NumberStyles.None, CultureInfo.InvariantCulture, out var version) && version > 0 ? version
        : throw new InconsistentStateException($"{stateName} of {grainId}: ETag '{etag}' is not a version of the batched storage", etag, etag);
}
