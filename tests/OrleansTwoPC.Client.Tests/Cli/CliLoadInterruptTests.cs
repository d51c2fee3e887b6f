using System.Diagnostics;
using System.Text.Json;
using Npgsql;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Storage;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>Ctrl+C on a real <c>tpc load</c> process against a real silo process.</summary>
[Collection(PostgresCollection.Name)]
public sealed class CliLoadInterruptTests(PostgresFixture postgres, ITestOutputHelper log)
{
    private const int Requested = 1_000_000;

    [Fact]
    public async Task Sigint_stops_issuing_waits_for_the_orders_in_flight_and_prints_their_summary()
    {
        await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "sigint", TimeSpan.FromSeconds(60));
        var runId = "int" + Guid.NewGuid().ToString("N")[..6];
        Signals.LetChildrenReceiveInterrupt();
        using var load = Process.Start(Tpc.StartInfo(
        [
            "load", "--orders", Requested.ToString(), "--concurrency", "8", "--run-id", runId, "--json", .. silo.TpcSettings,
        ]))!;
        load.StandardInput.Close();
        var output = load.StandardOutput.ReadToEndAsync();
        var error = load.StandardError.ReadToEndAsync();
        try
        {
            // Interrupt once orders are flowing (their coordinator records appear).
            var coordinator = PostgresTopology.DeriveDatabases(postgres.AdminConnectionString, silo.Prefix).Coordinator;
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
            while (await CoordinatorRecordsAsync(coordinator) < 50)
            {
                if (load.HasExited)
                {
                    Assert.Fail($"tpc load exited early with {load.ExitCode}: {await error}");
                }

                Assert.True(DateTime.UtcNow < deadline, "no orders within 60 s\n" + silo.Output);
                await Task.Delay(200);
            }

            var interrupted = Stopwatch.StartNew();
            Signals.Send(load.Id, Signals.SIGINT);
            var exited = await Task.WhenAny(load.WaitForExitAsync(), Task.Delay(TimeSpan.FromSeconds(30))) is { IsCompletedSuccessfully: true } && load.HasExited;
            Assert.True(exited, "tpc load still running 30 s after SIGINT");
            log.WriteLine($"exit {load.ExitCode} {interrupted.Elapsed.TotalSeconds:0.0} s after SIGINT\n{await output}\n{await error}");

            Assert.NotEqual(0, load.ExitCode);
            Assert.Equal(130, load.ExitCode);
            Assert.Contains("tpc load: interrupted: ", await error);
            using var summary = JsonDocument.Parse(await output);
            var root = summary.RootElement;
            int Int(string name) => root.GetProperty(name).GetInt32();
            Assert.True(root.GetProperty("interrupted").GetBoolean());
            Assert.Equal(Requested, Int("requested"));
            Assert.InRange(Int("orders"), 50, Requested - 1);
            // Every order issued was waited for: none left unanswered, all committed (no abort mix).
            Assert.Equal(0, Int("unanswered"));
            Assert.Equal(Int("orders"), Int("committed"));
            Assert.Equal(0, Int("failures"));

            // Nothing was issued after the summary: the databases hold exactly the orders it counts, consistent.
            var check = await Tpc.RunAsync(["check", "--wait", "20", "--json", "--order-prefix", runId, .. silo.TpcSettings]);
            log.WriteLine(check.ToString());
            Assert.True(check.ExitCode == 0, check.ToString());
            using var report = JsonDocument.Parse(check.Out);
            Assert.Equal(Int("committed"), report.RootElement.GetProperty("transactionsCommitted").GetInt32());
            Assert.Equal(0, report.RootElement.GetProperty("transactionsAborted").GetInt32());
        }
        catch
        {
            log.WriteLine(silo.Output);
            throw;
        }
        finally
        {
            if (!load.HasExited)
            {
                load.Kill(entireProcessTree: true);
            }
        }
    }

    private static async Task<long> CoordinatorRecordsAsync(string connectionString)
    {
        try
        {
            await using var connection = new NpgsqlConnection(connectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT count(*) FROM twopc_grain_state", connection);
            return (long)(await command.ExecuteScalarAsync())!;
        }
        catch (PostgresException)
        {
            return 0; // not provisioned yet
        }
    }
}
