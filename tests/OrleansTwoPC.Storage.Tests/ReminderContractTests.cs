using System.Data;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>The reminder queries, called as AdoNetReminderTable 10.4.2 calls them.</summary>
[Collection(PostgresCollection.Name)]
public sealed class ReminderContractTests(PostgresFixture fixture)
{
    private string Db => fixture.Databases.Coordinator;

    private async Task<int> UpsertAsync(string serviceId, string grainId, string name, int grainHash, TimeSpan period)
    {
        var rows = await QueryRunner.RunAsync(Db, "UpsertReminderRowKey",
            new("ServiceId", serviceId, DbType.String),
            new("GrainHash", grainHash, DbType.Int32),
            new("GrainId", grainId, DbType.AnsiString),
            new("ReminderName", name, DbType.String),
            new("StartTime", new DateTime(2030, 1, 2, 3, 4, 5, DateTimeKind.Utc), DbType.DateTime),
            // The provider sends int when the period fits, long otherwise.
            period.TotalMilliseconds <= int.MaxValue
                ? new Arg("Period", (int)period.TotalMilliseconds, DbType.Int32)
                : new Arg("Period", (long)period.TotalMilliseconds, DbType.Int64));
        return Convert.ToInt32(Assert.Single(rows)["Version"]);
    }

    private async Task<bool> DeleteAsync(string serviceId, string grainId, string name, int version)
    {
        var rows = await QueryRunner.RunAsync(Db, "DeleteReminderRowKey",
            new("ServiceId", serviceId, DbType.String),
            new("GrainId", grainId, DbType.AnsiString),
            new("ReminderName", name, DbType.String),
            new("Version", version, DbType.Int32));

        // The provider reads a single column of a single row and converts it to bool.
        var row = Assert.Single(rows);
        Assert.Single(row);
        return Convert.ToBoolean(row.Values.Single());
    }

    private Task<List<Dictionary<string, object?>>> ReadRowAsync(string serviceId, string grainId, string name) =>
        QueryRunner.RunAsync(Db, "ReadReminderRowKey",
            new("ServiceId", serviceId, DbType.String),
            new("GrainId", grainId, DbType.AnsiString),
            new("ReminderName", name, DbType.String));

    [Fact]
    public async Task Upsert_returns_0_for_a_new_row_then_1()
    {
        Assert.Equal(0, await UpsertAsync("rem-1", "grain/a", "r1", 10, TimeSpan.FromMinutes(1)));
        Assert.Equal(1, await UpsertAsync("rem-1", "grain/a", "r1", 10, TimeSpan.FromMinutes(2)));

        var row = Assert.Single(await ReadRowAsync("rem-1", "grain/a", "r1"));
        Assert.Equal(1, row["Version"]);
        Assert.Equal(120_000L, row["Period"]);
        Assert.Equal(new DateTime(2030, 1, 2, 3, 4, 5, DateTimeKind.Utc), ((DateTime)row["StartTime"]!).ToUniversalTime());
    }

    [Fact]
    public async Task Long_periods_are_stored_as_bigint()
    {
        var period = TimeSpan.FromDays(60); // > int.MaxValue milliseconds
        Assert.Equal(0, await UpsertAsync("rem-2", "grain/b", "long", 5, period));

        var row = Assert.Single(await ReadRowAsync("rem-2", "grain/b", "long"));
        Assert.Equal((long)period.TotalMilliseconds, row["Period"]);
    }

    [Fact]
    public async Task Delete_with_the_wrong_version_deletes_nothing()
    {
        Assert.Equal(0, await UpsertAsync("rem-3", "grain/c", "r", 1, TimeSpan.FromMinutes(1)));
        Assert.Equal(1, await UpsertAsync("rem-3", "grain/c", "r", 1, TimeSpan.FromMinutes(1)));

        Assert.False(await DeleteAsync("rem-3", "grain/c", "r", 0));
        Assert.Single(await ReadRowAsync("rem-3", "grain/c", "r"));

        Assert.True(await DeleteAsync("rem-3", "grain/c", "r", 1));
        Assert.Empty(await ReadRowAsync("rem-3", "grain/c", "r"));
        Assert.False(await DeleteAsync("rem-3", "grain/c", "r", 1));
    }

    [Fact]
    public async Task Range_reads_cover_plain_and_wrapping_ranges()
    {
        const string service = "rem-4";
        var hashes = new[] { int.MinValue + 5, -100, 0, 100, int.MaxValue - 5 };
        foreach (var hash in hashes)
        {
            await UpsertAsync(service, $"grain/{hash}", "r", hash, TimeSpan.FromMinutes(1));
        }

        async Task<int[]> Range(string key, int begin, int end)
        {
            var rows = await QueryRunner.RunAsync(Db, key,
                new("ServiceId", service, DbType.String),
                new("BeginHash", begin, DbType.Int32),
                new("EndHash", end, DbType.Int32));
            return rows.Select(r => int.Parse(((string)r["GrainId"]!)["grain/".Length..])).Order().ToArray();
        }

        // (begin, end]: excludes begin, includes end.
        Assert.Equal(new[] { 0, 100 }, await Range("ReadRangeRows1Key", -100, 100));
        // Wrap-around: everything above begin or at/below end.
        Assert.Equal(new[] { int.MinValue + 5, -100, int.MaxValue - 5 }, await Range("ReadRangeRows2Key", 100, -100));

        var perGrain = await QueryRunner.RunAsync(Db, "ReadReminderRowsKey",
            new("ServiceId", service, DbType.String),
            new("GrainId", "grain/0", DbType.AnsiString));
        Assert.Single(perGrain);

        await QueryRunner.RunAsync(Db, "DeleteReminderRowsKey", new Arg("ServiceId", service, DbType.String));
        Assert.Empty(await Range("ReadRangeRows2Key", 0, 0));
    }
}
