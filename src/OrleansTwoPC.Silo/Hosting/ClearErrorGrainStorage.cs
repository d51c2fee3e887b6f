using Orleans.Storage;
using OrleansTwoPC.Grains.Errors;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// Wraps a grain-storage provider so that database failures surface as a <see cref="TwoPcException"/> with
/// code <see cref="TwoPcErrorCode.StorageUnavailable"/> naming the service (a type every client can
/// deserialize, unlike the driver's), while version conflicts (<see cref="InconsistentStateException"/>) pass unchanged.
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
            // A broken connection (the database restarted or went away) means every idle pooled connection is
            // dead too: drop them, so one failure is seen per outage rather than one per pooled connection.
            if (ContractErrors.Find(ex, e => e is System.Data.Common.DbException { IsTransient: true }) is not null) Npgsql.NpgsqlConnection.ClearAllPools();
            throw TwoPcException.StorageUnavailable($"{service} storage unavailable ({what} of {grainId}): {TwoPcException.OneLine(ex.GetBaseException().Message)}");
        }
    }
}
