using Orleans.Storage;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// Raised instead of a database driver's exception, which Orleans cannot send to a caller (it would
/// arrive as "could not find a codec for Npgsql.PostgresException"): the caller gets one clear line.
/// </summary>
[GenerateSerializer]
public sealed class StorageUnavailableException : Exception
{
    public StorageUnavailableException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// Wraps a grain-storage provider so that database failures surface as <see cref="StorageUnavailableException"/>
/// naming the service, while version conflicts (<see cref="InconsistentStateException"/>) pass unchanged.
/// </summary>
public sealed class ClearErrorGrainStorage(string service, IGrainStorage inner) : IGrainStorage, ILifecycleParticipant<ISiloLifecycle>
{
    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        Guard(() => inner.ReadStateAsync(stateName, grainId, grainState), "read", grainId);

    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        Guard(() => inner.WriteStateAsync(stateName, grainId, grainState), "write", grainId);

    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
        Guard(() => inner.ClearStateAsync(stateName, grainId, grainState), "clear", grainId);

    public void Participate(ISiloLifecycle lifecycle) => (inner as ILifecycleParticipant<ISiloLifecycle>)?.Participate(lifecycle);

    private async Task Guard(Func<Task> operation, string what, GrainId grainId)
    {
        try
        {
            await operation();
        }
        catch (InconsistentStateException)
        {
            throw;
        }
        catch (Exception ex)
        {
            throw new StorageUnavailableException($"{service} storage unavailable ({what} of {grainId}): {ex.GetBaseException().Message}");
        }
    }
}
