using System.Data;
using Npgsql;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>The clustering queries, called as AdoNetClusteringTable 10.4.2 calls them.</summary>
[Collection(PostgresCollection.Name)]
public sealed class MembershipContractTests(PostgresFixture fixture)
{
    private static readonly DateTime Start = new(2030, 1, 1, 0, 0, 0, DateTimeKind.Utc);

    // ASSERT-based scripts silently stop checking when asserts are off; ours must not care.
    private string Db => new NpgsqlConnectionStringBuilder(fixture.Databases.Coordinator)
    {
        Options = "-c plpgsql.check_asserts=off",
    }.ConnectionString;

    private static Arg[] Silo(string deployment, int port) =>
    [
        new("DeploymentId", deployment, DbType.String),
        new("Address", "10.0.0.1", DbType.AnsiString),
        new("Port", port, DbType.Int32),
        new("Generation", 7, DbType.Int32),
    ];

    private async Task<bool> SingleBoolAsync(string key, Arg[] args)
    {
        var row = Assert.Single(await QueryRunner.RunAsync(Db, key, args));
        Assert.Single(row);
        return Convert.ToBoolean(row.Values.Single());
    }

    private Task<bool> InsertVersionAsync(string deployment) =>
        SingleBoolAsync("InsertMembershipVersionKey", [new("DeploymentId", deployment, DbType.String)]);

    private Task<bool> InsertAsync(string deployment, int port, int version) =>
        SingleBoolAsync("InsertMembershipKey",
        [
            .. Silo(deployment, port),
            new("IAmAliveTime", Start, DbType.DateTime),
            new("SiloName", $"silo-{port}", DbType.String),
            new("HostName", "host", DbType.String),
            new("StartTime", Start, DbType.DateTime),
            new("Status", 3, DbType.Int32),
            new("ProxyPort", port + 1000, DbType.Int32),
            new("Version", version, DbType.Int32),
        ]);

    private Task<bool> UpdateAsync(string deployment, int port, int status, string? suspectTimes, int version) =>
        SingleBoolAsync("UpdateMembershipKey",
        [
            .. Silo(deployment, port),
            new("IAmAliveTime", Start.AddMinutes(1), DbType.DateTime),
            new("Status", status, DbType.Int32),
            new("SuspectTimes", suspectTimes, DbType.String),
            new("Version", version, DbType.Int32),
        ]);

    private Task<List<Dictionary<string, object?>>> ReadAllAsync(string deployment) =>
        QueryRunner.RunAsync(Db, "MembershipReadAllKey", new Arg("DeploymentId", deployment, DbType.String));

    private async Task<int> TableVersionAsync(string deployment) => (int)(await ReadAllAsync(deployment))[0]["Version"]!;

    [Fact]
    public async Task Version_row_is_created_once()
    {
        Assert.True(await InsertVersionAsync("m-1"));
        Assert.False(await InsertVersionAsync("m-1"));

        var row = Assert.Single(await ReadAllAsync("m-1"));
        Assert.Equal(0, row["Version"]);
        Assert.Null(row["StartTime"]); // "no members" as the provider reads it
    }

    [Fact]
    public async Task Insert_with_a_stale_version_changes_nothing()
    {
        await InsertVersionAsync("m-2");
        Assert.True(await InsertAsync("m-2", 11111, version: 0));
        Assert.Equal(1, await TableVersionAsync("m-2"));

        Assert.False(await InsertAsync("m-2", 22222, version: 0));

        var rows = await ReadAllAsync("m-2");
        Assert.Equal([11111], rows.Select(r => (int)r["Port"]!));
        Assert.Equal(1, await TableVersionAsync("m-2"));
    }

    [Fact]
    public async Task Insert_of_an_existing_member_rolls_back_the_version_bump()
    {
        await InsertVersionAsync("m-3");
        Assert.True(await InsertAsync("m-3", 11111, version: 0));

        // Right table version, but the member exists: nothing may change, not even the version.
        Assert.False(await InsertAsync("m-3", 11111, version: 1));
        Assert.Equal(1, await TableVersionAsync("m-3"));
    }

    [Fact]
    public async Task Insert_without_a_version_row_fails_cleanly()
    {
        Assert.False(await InsertAsync("m-missing", 11111, version: 0));
    }

    [Fact]
    public async Task Update_compares_and_swaps_the_table_version()
    {
        await InsertVersionAsync("m-4");
        Assert.True(await InsertAsync("m-4", 11111, version: 0));

        Assert.False(await UpdateAsync("m-4", 11111, status: 5, suspectTimes: "x", version: 0));
        var unchanged = Assert.Single(await ReadAllAsync("m-4"));
        Assert.Equal(3, unchanged["Status"]);
        Assert.Equal(1, unchanged["Version"]);

        Assert.True(await UpdateAsync("m-4", 11111, status: 5, suspectTimes: "x", version: 1));
        var changed = Assert.Single(await ReadAllAsync("m-4"));
        Assert.Equal(5, changed["Status"]);
        Assert.Equal("x", changed["SuspectTimes"]);
        Assert.Equal(2, changed["Version"]);

        // Unknown member with the right version: no change at all.
        Assert.False(await UpdateAsync("m-4", 99999, status: 6, suspectTimes: null, version: 2));
        Assert.Equal(2, await TableVersionAsync("m-4"));
    }

    [Fact]
    public async Task Concurrent_inserts_on_one_version_have_one_winner()
    {
        await InsertVersionAsync("m-5");
        var results = await Task.WhenAll(Enumerable.Range(0, 8)
            .Select(i => Task.Run(() => InsertAsync("m-5", 20000 + i, version: 0))));

        Assert.Equal(1, results.Count(ok => ok));
        Assert.Single(await ReadAllAsync("m-5"));
        Assert.Equal(1, await TableVersionAsync("m-5"));
    }

    [Fact]
    public async Task Read_row_gateways_heartbeat_and_cleanup()
    {
        await InsertVersionAsync("m-6");
        Assert.True(await InsertAsync("m-6", 11111, version: 0));
        Assert.True(await InsertAsync("m-6", 22222, version: 1));

        var readRow = Assert.Single(await QueryRunner.RunAsync(Db, "MembershipReadRowKey", Silo("m-6", 22222)));
        Assert.Equal(22222, readRow["Port"]);
        Assert.Equal("silo-22222", readRow["SiloName"]);
        var absent = Assert.Single(await QueryRunner.RunAsync(Db, "MembershipReadRowKey", Silo("m-6", 33333)));
        Assert.Null(absent["StartTime"]);
        Assert.Equal(2, absent["Version"]);

        var gateways = await QueryRunner.RunAsync(Db, "GatewaysQueryKey",
            new("DeploymentId", "m-6", DbType.String), new("Status", 3, DbType.Int32));
        Assert.Equal([12111, 23222], gateways.Select(g => (int)g["ProxyPort"]!).Order());

        // Heartbeats never move backwards.
        await QueryRunner.RunAsync(Db, "UpdateIAmAlivetimeKey", [.. Silo("m-6", 11111), new("IAmAliveTime", Start.AddHours(1), DbType.DateTime)]);
        await QueryRunner.RunAsync(Db, "UpdateIAmAlivetimeKey", [.. Silo("m-6", 11111), new("IAmAliveTime", Start.AddMinutes(5), DbType.DateTime)]);
        var row = (await ReadAllAsync("m-6")).Single(r => (int)r["Port"]! == 11111);
        Assert.Equal(Start.AddHours(1), ((DateTime)row["IAmAliveTime"]!).ToUniversalTime());

        // Per-entry cleanup deletes a dead member only if it is still exactly as read.
        Assert.True(await UpdateAsync("m-6", 22222, status: 6, suspectTimes: null, version: 2));
        var dead = (await ReadAllAsync("m-6")).Single(r => (int)r["Port"]! == 22222);
        Arg[] Cleanup(DateTime iAmAlive) =>
        [
            .. Silo("m-6", 22222),
            new("SuspectTimes", null, DbType.String),
            new("StartTime", (DateTime)dead["StartTime"]!, DbType.DateTime),
            new("IAmAliveTime", iAmAlive, DbType.DateTime),
        ];
        await QueryRunner.RunAsync(Db, "CleanupDefunctSiloEntryKey", Cleanup(Start.AddDays(3)));
        Assert.Equal(2, (await ReadAllAsync("m-6")).Count);
        await QueryRunner.RunAsync(Db, "CleanupDefunctSiloEntryKey", Cleanup((DateTime)dead["IAmAliveTime"]!));
        Assert.Equal([11111], (await ReadAllAsync("m-6")).Select(r => (int)r["Port"]!));

        await QueryRunner.RunAsync(Db, "DeleteMembershipTableEntriesKey", new Arg("DeploymentId", "m-6", DbType.String));
        Assert.Empty(await ReadAllAsync("m-6"));
    }

    [Fact]
    public async Task Legacy_bulk_cleanup_removes_only_old_dead_members()
    {
        await InsertVersionAsync("m-7");
        Assert.True(await InsertAsync("m-7", 11111, version: 0));
        Assert.True(await InsertAsync("m-7", 22222, version: 1));
        Assert.True(await UpdateAsync("m-7", 22222, status: 6, suspectTimes: null, version: 2));

        await QueryRunner.RunAsync(Db, "CleanupDefunctSiloEntriesKey",
            new("DeploymentId", "m-7", DbType.String), new("IAmAliveTime", Start.AddDays(1), DbType.DateTime));

        Assert.Equal([11111], (await ReadAllAsync("m-7")).Select(r => (int)r["Port"]!));
    }
}
