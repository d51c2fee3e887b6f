using Orleans.Storage;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// Hands the grain-storage provider a key it stores as the exact string: a string key that Orleans would
/// parse as a number or GUID (and so share a row with other keys) is escaped first (see <see cref="StoredGrainKey"/>).
/// </summary>
public sealed class DistinctKeyGrainStorage(IGrainStorage inner) : IGrainStorage, ILifecycleParticipant<ISiloLifecycle>
{
    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        inner.ReadStateAsync(stateName, Stored(grainId), grainState);

    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        inner.WriteStateAsync(stateName, Stored(grainId), grainState);

    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        inner.ClearStateAsync(stateName, Stored(grainId), grainState);

    public void Participate(ISiloLifecycle lifecycle) => (inner as ILifecycleParticipant<ISiloLifecycle>)?.Participate(lifecycle);

    public static GrainId Stored(GrainId grainId)
    {
        var key = grainId.Key.ToString()!;
        return StoredGrainKey.MustEscape(key) ? GrainId.Create(grainId.Type, StoredGrainKey.Encode(key)) : grainId;
    }
}
