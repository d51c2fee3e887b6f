using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Processes;

/// <summary>
/// The silo executable's health probes (<c>TwoPC:Health:Port</c>) as a container engine or kubelet sees them:
/// a real silo process on its own throwaway PostgreSQL, which the test stops and starts again.
/// </summary>
[Collection(SiloProcessCollection.Name)]
public sealed class HealthProbeProcessTests(ITestOutputHelper output)
{
    private static readonly TimeSpan StartBound = TimeSpan.FromSeconds(90);
    private static readonly TimeSpan ProbeBound = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Ready_follows_postgres_and_membership_while_live_stays_up()
    {
        // Its own server: stopping the shared one would break every other test.
        await using var postgres = await EmbeddedPostgres.StartNewAsync(new EmbeddedPostgresOptions { MaxConnections = 100 });
        var cluster = ProcessClusterSettings.Unique(postgres.AdminConnectionString, "health");
        var port = ChildSilo.FreePort();
        await using var silo = SiloProcess.Start("silo-health", cluster, new Dictionary<string, string>
        {
            ["TwoPC:Roles"] = "payment",
            ["TwoPC:Health:Port"] = port.ToString(),
        });
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(10) };

        var live = await PollAsync(http, silo, "/health/live", HttpStatusCode.OK, StartBound);
        Assert.Equal("Healthy", live.GetProperty("status").GetString());
        var ready = await PollAsync(http, silo, "/health/ready", HttpStatusCode.OK, StartBound);
        output.WriteLine($"ready: {ready}");
        Assert.Equal("Healthy", ready.GetProperty("status").GetString());
        // A payment silo depends on its own database and the coordinator's (membership), not on the others.
        Assert.Equal(["postgres:Payments", "postgres:Coordinator", "membership"], Checks(ready).Select(c => c.Name));
        Assert.All(Checks(ready), c => Assert.True(c.Healthy, $"{c.Name}: {c.Detail}"));
        Assert.Contains(" is Active ", Checks(ready).Single(c => c.Name == "membership").Detail);
        Assert.Equal(1, await SiloProcess.ActiveSilosAsync(cluster));

        await postgres.StopAsync();
        var unready = await PollAsync(http, silo, "/health/ready", HttpStatusCode.ServiceUnavailable, ProbeBound);
        output.WriteLine($"PostgreSQL stopped: {unready}");
        Assert.Equal("Unhealthy", unready.GetProperty("status").GetString());
        foreach (var database in new[] { "postgres:Payments", "postgres:Coordinator" })
        {
            var check = Checks(unready).Single(c => c.Name == database);
            Assert.False(check.Healthy);
            Assert.Contains("unreachable", check.Detail);
        }

        // Liveness ignores the database: restarting the silo would not bring PostgreSQL back.
        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("/health/live")).StatusCode);

        await postgres.StartAsync();
        var readyAgain = await PollAsync(http, silo, "/health/ready", HttpStatusCode.OK, StartBound);
        output.WriteLine($"PostgreSQL back: {readyAgain}");
        Assert.All(Checks(readyAgain), c => Assert.True(c.Healthy, $"{c.Name}: {c.Detail}"));
    }

    [Theory]
    [InlineData("70000")]
    [InlineData("health")]
    public async Task A_bad_health_port_stops_the_silo_with_one_clear_line(string setting)
    {
        var run = Guid.NewGuid().ToString("N")[..12];
        // Refused before PostgreSQL is touched: this server address is never connected to.
        await using var silo = ChildSilo.Start($"silo-badport-{run}", "Host=127.0.0.1;Port=1;Username=nobody;Password=unused", $"p_{run}",
            $"proc-{run}", ProcessClusterSettings.ServiceId, "Host=127.0.0.1;Port=1;Database=unused", new Dictionary<string, string>
            {
                ["TwoPC:Health:Port"] = setting,
            });
        using var timeout = new CancellationTokenSource(StartBound);
        await silo.WaitForExitAsync(timeout.Token);
        var lines = silo.LastLines(50);
        output.WriteLine(string.Join(Environment.NewLine, lines));
        Assert.Equal(1, silo.ExitCode);
        Assert.Contains($"[stderr] error: TwoPC:Health:Port must be a TCP port (1-65535), not '{setting}'", lines);
    }

    [Fact]
    public async Task A_health_port_in_use_stops_the_silo_with_one_clear_line()
    {
        var run = Guid.NewGuid().ToString("N")[..12];
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        await using var silo = ChildSilo.Start($"silo-takenport-{run}", "Host=127.0.0.1;Port=1;Username=nobody;Password=unused", $"p_{run}",
            $"proc-{run}", ProcessClusterSettings.ServiceId, "Host=127.0.0.1;Port=1;Database=unused", new Dictionary<string, string>
            {
                ["TwoPC:Health:Port"] = port.ToString(),
            });
        using var timeout = new CancellationTokenSource(StartBound);
        await silo.WaitForExitAsync(timeout.Token);
        var lines = silo.LastLines(50);
        output.WriteLine(string.Join(Environment.NewLine, lines));
        Assert.Equal(1, silo.ExitCode);
        Assert.Contains(lines, l => l.Contains($"health port {port} on 127.0.0.1 is already in use by another process (TwoPC:Health:Port)"));
    }

    private sealed record Check(string Name, bool Healthy, string Detail);

    private static List<Check> Checks(JsonElement report) =>
        report.GetProperty("checks").EnumerateArray()
            .Select(c => new Check(c.GetProperty("name").GetString()!, c.GetProperty("healthy").GetBoolean(), c.GetProperty("detail").GetString()!))
            .ToList();

    /// <summary>Polls a probe until it answers with <paramref name="expected"/>; the silo must stay up meanwhile.</summary>
    private static async Task<JsonElement> PollAsync(HttpClient http, SiloProcess silo, string path, HttpStatusCode expected, TimeSpan bound)
    {
        var deadline = DateTime.UtcNow + bound;
        var last = "no answer yet";
        while (true)
        {
            if (silo.HasExited)
                throw new InvalidOperationException($"the silo exited while waiting for {path} to answer {(int)expected}:{Environment.NewLine}{silo.Output}");
            try
            {
                using var response = await http.GetAsync(path);
                var body = await response.Content.ReadAsStringAsync();
                if (response.StatusCode == expected) return JsonDocument.Parse(body).RootElement.Clone();
                last = $"{(int)response.StatusCode} {body}";
            }
            catch (HttpRequestException ex)
            {
                last = ex.Message;
            }

            if (DateTime.UtcNow > deadline)
                throw new TimeoutException($"{path} did not answer {(int)expected} within {bound.TotalSeconds:0} s (last: {last}):{Environment.NewLine}{silo.Output}");
            await Task.Delay(250);
        }
    }
}
