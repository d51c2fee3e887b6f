using Npgsql;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>Lifecycle tests: each uses its own servers, since they stop them.</summary>
public sealed class EmbeddedPostgresTests
{
    [Fact]
    public async Task Stop_and_start_keeps_data_and_port()
    {
        await using var server = await EmbeddedPostgres.StartNewAsync();
        var port = server.Port;
        await QueryRunner.ScalarAsync(server.AdminConnectionString, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)");

        await server.StopAsync();
        Assert.False(server.IsRunning);
        NpgsqlConnection.ClearAllPools();
        await Assert.ThrowsAnyAsync<NpgsqlException>(() => QueryRunner.ScalarAsync(server.AdminConnectionString, "SELECT 1"));

        await server.StartAsync();
        Assert.True(server.IsRunning);
        Assert.Equal(port, server.Port);
        Assert.Equal(42, await QueryRunner.ScalarAsync(server.AdminConnectionString, "SELECT v FROM kept"));

        // Durability settings are the defaults: fsync stays on. Our own settings are applied.
        Assert.Equal("on", await QueryRunner.ScalarAsync(server.AdminConnectionString, "SHOW fsync"));
        Assert.Equal("300", await QueryRunner.ScalarAsync(server.AdminConnectionString, "SHOW max_connections"));
        Assert.Equal("UTF8", await QueryRunner.ScalarAsync(server.AdminConnectionString, "SHOW server_encoding"));
    }

    [Fact]
    public async Task Several_servers_coexist_and_dispose_removes_their_files()
    {
        // Started concurrently: port picking and directories must not collide.
        var started = await Task.WhenAll(EmbeddedPostgres.StartNewAsync(), EmbeddedPostgres.StartNewAsync());
        var (first, second) = (started[0], started[1]);
        try
        {
            Assert.NotEqual(first.Port, second.Port);
            Assert.NotEqual(first.DataDirectory, second.DataDirectory);
            Assert.Equal(1, await QueryRunner.ScalarAsync(first.AdminConnectionString, "SELECT 1"));
            Assert.Equal(1, await QueryRunner.ScalarAsync(second.AdminConnectionString, "SELECT 1"));
        }
        finally
        {
            await first.DisposeAsync();
            await second.DisposeAsync();
        }

        Assert.False(Directory.Exists(first.DataDirectory));
        Assert.False(Directory.Exists(second.DataDirectory));
        Assert.False(first.IsRunning);
    }

    [Fact]
    public async Task A_given_data_directory_is_kept_and_reused()
    {
        var directory = Path.Combine(Path.GetTempPath(), "twopc-pg-keep-" + Guid.NewGuid().ToString("N")[..8]);
        try
        {
            await using (var server = await EmbeddedPostgres.StartNewAsync(new EmbeddedPostgresOptions { DataDirectory = directory }))
            {
                await QueryRunner.ScalarAsync(server.AdminConnectionString, "CREATE TABLE kept (v int); INSERT INTO kept VALUES (7)");
            }

            Assert.True(File.Exists(Path.Combine(directory, "PG_VERSION")));

            // A new instance (new port) on the same directory skips initdb and sees the data.
            await using (var again = await EmbeddedPostgres.StartNewAsync(new EmbeddedPostgresOptions { DataDirectory = directory }))
            {
                Assert.Equal(7, await QueryRunner.ScalarAsync(again.AdminConnectionString, "SELECT v FROM kept"));
            }
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }
}
