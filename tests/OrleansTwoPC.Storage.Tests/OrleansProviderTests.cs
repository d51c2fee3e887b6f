using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using Orleans.Storage;

namespace OrleansTwoPC.Storage.Tests;

public interface IStorageProbeGrain : IGrainWithIntegerKey
{
    Task<int> Increment();

    Task<int> Get();

    Task<string?> ETag();

    Task Clear();

    Task Deactivate();

    Task SetReminder(bool on);
}

public interface IDeletingProbeGrain : IGrainWithStringKey
{
    Task Write(int value);

    Task Clear();
}

[GenerateSerializer]
public sealed class ProbeState
{
    [Id(0)]
    public int Value { get; set; }
}

public sealed class StorageProbeGrain(
    [PersistentState("storagetests-probe", OrleansProviderTests.StorageName)] IPersistentState<ProbeState> state)
    : Grain, IStorageProbeGrain, IRemindable
{
    public async Task<int> Increment()
    {
        state.State.Value++;
        await state.WriteStateAsync();
        return state.State.Value;
    }

    public Task<int> Get() => Task.FromResult(state.State.Value);

    public Task<string?> ETag() => Task.FromResult(state.Etag);

    public Task Clear() => state.ClearStateAsync();

    public Task Deactivate()
    {
        DeactivateOnIdle();
        return Task.CompletedTask;
    }

    public async Task SetReminder(bool on)
    {
        if (on)
        {
            await this.RegisterOrUpdateReminder("probe", TimeSpan.FromMinutes(10), TimeSpan.FromMinutes(10));
        }
        else
        {
            var reminder = await this.GetReminder("probe");
            if (reminder is not null)
            {
                await this.UnregisterReminder(reminder);
            }
        }
    }

    public Task ReceiveReminder(string reminderName, TickStatus status) => Task.CompletedTask;
}

public sealed class DeletingProbeGrain(
    [PersistentState("storagetests-deleting", OrleansProviderTests.DeletingStorageName)] IPersistentState<ProbeState> state)
    : Grain, IDeletingProbeGrain
{
    public Task Write(int value)
    {
        state.State.Value = value;
        return state.WriteStateAsync();
    }

    public Task Clear() => state.ClearStateAsync();
}

/// <summary>
/// A real silo with the ADO.NET clustering, reminder and storage providers on the embedded
/// server: proves the providers accept the scripts (missing keys fail start-up) and that the
/// version checks surface as InconsistentStateException.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class OrleansProviderTests(PostgresFixture fixture) : IAsyncLifetime
{
    public const string StorageName = "storagetests";
    public const string DeletingStorageName = "storagetests-delete";
    private const string ServiceId = "storage-tests-silo";

    private readonly string _clusterId = "storage-tests-" + Guid.NewGuid().ToString("N")[..8];
    private IHost _host = null!;

    private IGrainFactory Grains => _host.Services.GetRequiredService<IGrainFactory>();

    public async Task InitializeAsync()
    {
        var databases = fixture.Databases;
        _host = new HostBuilder()
            .UseOrleans(silo =>
            {
                silo.Configure<ClusterOptions>(o =>
                {
                    o.ClusterId = _clusterId;
                    o.ServiceId = ServiceId;
                });
                silo.ConfigureEndpoints(IPAddress.Loopback, FreePort(), FreePort());
                silo.UseAdoNetClustering(o =>
                {
                    o.Invariant = OrleansSchema.Invariant;
                    o.ConnectionString = databases.Coordinator;
                });
                silo.UseAdoNetReminderService(o =>
                {
                    o.Invariant = OrleansSchema.Invariant;
                    o.ConnectionString = databases.Coordinator;
                });
                silo.AddAdoNetGrainStorage(StorageName, o =>
                {
                    o.Invariant = OrleansSchema.Invariant;
                    o.ConnectionString = databases.Inventory;
                });
                silo.AddAdoNetGrainStorage(DeletingStorageName, o =>
                {
                    o.Invariant = OrleansSchema.Invariant;
                    o.ConnectionString = databases.Inventory;
                    o.DeleteStateOnClear = true;
                });
            })
            .Build();
        await _host.StartAsync();
    }

    public async Task DisposeAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await _host.StopAsync(timeout.Token);
        _host.Dispose();
    }

    private Task<object?> StorageScalarAsync(string sql, long key) =>
        QueryRunner.ScalarAsync(fixture.Databases.Inventory, sql, ("service", ServiceId), ("n1", key));

    [Fact]
    public async Task Silo_joins_the_membership_table_as_active()
    {
        var status = await QueryRunner.ScalarAsync(fixture.Databases.Coordinator,
            "SELECT Status FROM OrleansMembershipTable WHERE DeploymentId = @d", ("d", _clusterId));

        Assert.Equal(3, status); // SiloStatus.Active
    }

    [Fact]
    public async Task State_round_trips_through_postgres()
    {
        var grain = Grains.GetGrain<IStorageProbeGrain>(1);
        Assert.Equal(1, await grain.Increment());
        Assert.Equal(2, await grain.Increment());

        await grain.Deactivate();
        await Task.Delay(200);
        Assert.Equal(2, await grain.Get());
        Assert.Equal("2", await grain.ETag());

        // The state name (not the grain class) is the row's GrainTypeString.
        Assert.Equal(2, await StorageScalarAsync(
            "SELECT Version FROM OrleansStorage WHERE ServiceId = @service AND GrainIdN1 = @n1 AND GrainTypeString = 'storagetests-probe'", 1));

        await grain.Clear();
        Assert.Null(await StorageScalarAsync(
            "SELECT PayloadBinary FROM OrleansStorage WHERE ServiceId = @service AND GrainIdN1 = @n1", 1));
        Assert.Equal(1, await grain.Increment());
    }

    [Fact]
    public async Task A_stale_update_raises_InconsistentStateException()
    {
        var grain = Grains.GetGrain<IStorageProbeGrain>(2);
        Assert.Equal(1, await grain.Increment());

        // Another writer (think: a second activation) moves the row on.
        await StorageScalarAsync("UPDATE OrleansStorage SET Version = Version + 1 WHERE ServiceId = @service AND GrainIdN1 = @n1", 2);

        await Assert.ThrowsAsync<InconsistentStateException>(() => grain.Increment());
    }

    [Fact]
    public async Task A_lost_first_insert_race_raises_InconsistentStateException()
    {
        // Learn the row identity the provider uses for key 3, then remove the row again.
        var grain = Grains.GetGrain<IStorageProbeGrain>(3);
        Assert.Equal(1, await grain.Increment());
        var grainIdHash = (int)(await StorageScalarAsync("SELECT GrainIdHash FROM OrleansStorage WHERE ServiceId = @service AND GrainIdN1 = @n1", 3))!;
        var grainTypeHash = (int)(await StorageScalarAsync("SELECT GrainTypeHash FROM OrleansStorage WHERE ServiceId = @service AND GrainIdN1 = @n1", 3))!;
        await StorageScalarAsync("DELETE FROM OrleansStorage WHERE ServiceId = @service AND GrainIdN1 = @n1", 3);

        // A fresh activation finds no record, so its next write is a first insert (ETag null)...
        await grain.Deactivate();
        await Task.Delay(200);
        Assert.Null(await grain.ETag());

        // ...but another activation gets its first insert in before it.
        await QueryRunner.ScalarAsync(fixture.Databases.Inventory,
            """
            INSERT INTO OrleansStorage (GrainIdHash, GrainIdN0, GrainIdN1, GrainTypeHash, GrainTypeString, ServiceId, PayloadBinary, Version)
            VALUES (@gh, 0, 3, @th, 'storagetests-probe', @service, NULL, 1)
            """,
            ("gh", grainIdHash), ("th", grainTypeHash), ("service", ServiceId));

        await Assert.ThrowsAsync<InconsistentStateException>(() => grain.Increment());
        Assert.Equal(1L, await StorageScalarAsync("SELECT count(*) FROM OrleansStorage WHERE ServiceId = @service AND GrainIdN1 = @n1", 3));
    }

    [Fact]
    public async Task Reminders_are_written_and_removed()
    {
        var grain = Grains.GetGrain<IStorageProbeGrain>(5);
        const string count = "SELECT count(*) FROM OrleansRemindersTable WHERE ServiceId = @s AND ReminderName = 'probe'";

        await grain.SetReminder(true);
        Assert.Equal(1L, await QueryRunner.ScalarAsync(fixture.Databases.Coordinator, count, ("s", ServiceId)));

        await grain.SetReminder(true); // update path: version 0 -> 1
        Assert.Equal(1, await QueryRunner.ScalarAsync(fixture.Databases.Coordinator,
            "SELECT Version FROM OrleansRemindersTable WHERE ServiceId = @s AND ReminderName = 'probe'", ("s", ServiceId)));

        await grain.SetReminder(false);
        Assert.Equal(0L, await QueryRunner.ScalarAsync(fixture.Databases.Coordinator, count, ("s", ServiceId)));
    }

    [Fact]
    public async Task DeleteStateOnClear_deletes_the_row()
    {
        var grain = Grains.GetGrain<IDeletingProbeGrain>("to-delete");
        const string count = "SELECT count(*) FROM OrleansStorage WHERE ServiceId = @s AND GrainTypeString = 'storagetests-deleting'";

        await grain.Write(5);
        Assert.Equal(1L, await QueryRunner.ScalarAsync(fixture.Databases.Inventory, count, ("s", ServiceId)));

        await grain.Clear();
        Assert.Equal(0L, await QueryRunner.ScalarAsync(fixture.Databases.Inventory, count, ("s", ServiceId)));

        await grain.Write(6); // ETag is null again after a delete: a fresh first insert
        Assert.Equal(1L, await QueryRunner.ScalarAsync(fixture.Databases.Inventory, count, ("s", ServiceId)));
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
