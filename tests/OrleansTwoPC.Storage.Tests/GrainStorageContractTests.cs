using System.Data;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>The grain storage queries, called exactly as AdoNetGrainStorage 10.4.2 calls them.</summary>
[Collection(PostgresCollection.Name)]
public sealed class GrainStorageContractTests(PostgresFixture fixture)
{
    private string Db => fixture.Databases.Inventory;

    private static Arg[] Identity(long n1, string? extension = null, string serviceId = "storage-tests") =>
    [
        new("GrainIdHash", unchecked((int)(n1 * 2654435761)), DbType.Int32),
        new("GrainIdN0", 0L, DbType.Int64),
        new("GrainIdN1", n1, DbType.Int64),
        new("GrainTypeHash", 12345, DbType.Int32),
        new("GrainTypeString", "contract-state", DbType.String),
        new("GrainIdExtensionString", extension, DbType.String),
        new("ServiceId", serviceId, DbType.String),
    ];

    private Task<int?> WriteAsync(long n1, int? version, byte[] payload, string? extension = null) =>
        VersionResultAsync("WriteToStorageKey",
        [
            .. Identity(n1, extension),
            new("GrainStateVersion", version, DbType.Int32),
            new("PayloadBinary", payload, DbType.Binary),
        ]);

    private Task<int?> ClearAsync(long n1, int? version) =>
        VersionResultAsync("ClearStorageKey", [.. Identity(n1), new("GrainStateVersion", version, DbType.Int32)]);

    private Task<int?> DeleteAsync(long n1, int? version) =>
        VersionResultAsync("DeleteStorageKey", [.. Identity(n1), new("GrainStateVersion", version, DbType.Int32)]);

    private async Task<int?> VersionResultAsync(string key, Arg[] args)
    {
        var rows = await QueryRunner.RunAsync(Db, key, args);

        // The provider reads exactly one row; a missing row would be indistinguishable for
        // some paths, so the scripts always return one.
        var row = Assert.Single(rows);
        return (int?)row["NewGrainStateVersion"];
    }

    private async Task<(byte[]? Payload, int Version)?> ReadAsync(long n1, string? extension = null)
    {
        var rows = await QueryRunner.RunAsync(Db, "ReadFromStorageKey", Identity(n1, extension));
        if (rows.Count == 0)
        {
            return null;
        }

        var row = Assert.Single(rows);
        return ((byte[]?)row["PayloadBinary"], (int)row["Version"]!);
    }

    private async Task<long> RowCountAsync(long n1) =>
        (long)(await QueryRunner.ScalarAsync(Db,
            "SELECT count(*) FROM OrleansStorage WHERE GrainIdN1 = @n1 AND ServiceId = 'storage-tests'", ("n1", n1)))!;

    [Fact]
    public async Task First_insert_returns_1_and_read_returns_payload_and_version()
    {
        Assert.Null(await ReadAsync(101));

        Assert.Equal(1, await WriteAsync(101, null, [1, 2, 3]));

        var read = await ReadAsync(101);
        Assert.Equal(new byte[] { 1, 2, 3 }, read!.Value.Payload);
        Assert.Equal(1, read.Value.Version);
    }

    [Fact]
    public async Task Second_first_insert_returns_mismatch_and_leaves_one_row()
    {
        Assert.Equal(1, await WriteAsync(102, null, [1]));

        // NULL is what makes the provider raise InconsistentStateException for a null ETag.
        Assert.Null(await WriteAsync(102, null, [2]));

        Assert.Equal(1, await RowCountAsync(102));
        Assert.Equal(new byte[] { 1 }, (await ReadAsync(102))!.Value.Payload);
    }

    [Fact]
    public async Task Racing_first_inserts_have_exactly_one_winner()
    {
        var results = await Task.WhenAll(Enumerable.Range(0, 16)
            .Select(i => Task.Run(() => WriteAsync(103, null, [(byte)i]))));

        Assert.Equal(1, results.Count(v => v == 1));
        Assert.Equal(15, results.Count(v => v is null));
        Assert.Equal(1, await RowCountAsync(103));
    }

    [Fact]
    public async Task Update_with_right_version_increments_and_stale_version_changes_nothing()
    {
        Assert.Equal(1, await WriteAsync(104, null, [1]));
        Assert.Equal(2, await WriteAsync(104, 1, [2]));
        Assert.Equal(3, await WriteAsync(104, 2, [3]));

        // Stale ETag: the provider sees NULL (not "version + 1") and throws.
        Assert.Null(await WriteAsync(104, 1, [99]));

        var read = await ReadAsync(104);
        Assert.Equal(new byte[] { 3 }, read!.Value.Payload);
        Assert.Equal(3, read.Value.Version);
    }

    [Fact]
    public async Task Update_of_a_missing_row_is_a_mismatch()
    {
        Assert.Null(await WriteAsync(105, 7, [1]));
        Assert.Equal(0, await RowCountAsync(105));
    }

    [Fact]
    public async Task Clear_keeps_the_row_with_a_new_version_and_no_payload()
    {
        Assert.Equal(1, await WriteAsync(106, null, [1]));

        Assert.Null(await ClearAsync(106, 5));
        Assert.Equal(2, await ClearAsync(106, 1));

        var read = await ReadAsync(106);
        Assert.Null(read!.Value.Payload);
        Assert.Equal(2, read.Value.Version);

        // A stale activation's first write still collides with the cleared row.
        Assert.Null(await WriteAsync(106, null, [7]));
        Assert.Equal(3, await WriteAsync(106, 2, [8]));
    }

    [Fact]
    public async Task Delete_checks_the_version_and_removes_the_row()
    {
        Assert.Equal(1, await WriteAsync(107, null, [1]));

        Assert.Null(await DeleteAsync(107, 9));
        Assert.Equal(1, await RowCountAsync(107));

        // Must differ from the ETag sent, else the provider reports a conflict.
        Assert.Equal(2, await DeleteAsync(107, 1));
        Assert.Equal(0, await RowCountAsync(107));

        // After a delete the provider's ETag is null again: a first insert works.
        Assert.Equal(1, await WriteAsync(107, null, [2]));
    }

    [Fact]
    public async Task Null_and_non_null_key_extensions_are_separate_states()
    {
        Assert.Equal(1, await WriteAsync(108, null, [1]));
        Assert.Equal(1, await WriteAsync(108, null, [2], extension: "ext"));

        Assert.Equal(new byte[] { 1 }, (await ReadAsync(108))!.Value.Payload);
        Assert.Equal(new byte[] { 2 }, (await ReadAsync(108, "ext"))!.Value.Payload);
        Assert.Null(await WriteAsync(108, null, [3], extension: "ext"));
    }

    [Fact]
    public async Task Unique_index_rejects_duplicate_identity_even_outside_the_queries()
    {
        Assert.Equal(1, await WriteAsync(109, null, [1]));

        var ex = await Assert.ThrowsAsync<Npgsql.PostgresException>(() => QueryRunner.ScalarAsync(Db,
            """
            INSERT INTO OrleansStorage (GrainIdHash, GrainIdN0, GrainIdN1, GrainTypeHash, GrainTypeString, ServiceId, Version)
            SELECT GrainIdHash, GrainIdN0, GrainIdN1, GrainTypeHash, GrainTypeString, ServiceId, 1
              FROM OrleansStorage WHERE GrainIdN1 = 109 AND ServiceId = 'storage-tests'
            """));
        Assert.Equal(Npgsql.PostgresErrorCodes.UniqueViolation, ex.SqlState);
    }
}
