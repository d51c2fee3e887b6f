using System.Diagnostics;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Silo.Demo;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>The silo executable's dashboard flag and role setting, seen from outside the process.</summary>
[Collection(PostgresCollection.Name)]
public sealed class SiloDashboardAndRolesProcessTests(PostgresFixture postgres, ITestOutputHelper log)
{
    [Fact]
    public async Task The_dashboard_flag_serves_the_Orleans_Dashboard_on_loopback()
    {
        var port = ChildSilo.FreePort();
        await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "dash", TimeSpan.FromSeconds(60),
            new Dictionary<string, string> { ["TwoPC:Dashboard:Enabled"] = "true", ["TwoPC:Dashboard:Port"] = port.ToString() });
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        // The web server starts after the silo joined the cluster: give it a moment.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        string page;
        while (true)
        {
            try
            {
                page = await http.GetStringAsync($"http://127.0.0.1:{port}/");
                break;
            }
            catch (HttpRequestException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(250);
            }
        }
        Assert.Contains("Orleans Dashboard", page);
        Assert.Contains($"Orleans Dashboard: http://127.0.0.1:{port}", silo.Output);
        Assert.Contains("Silo running with roles: all", silo.Output);
    }

    [Fact]
    public async Task Protocol_events_go_to_a_rolling_compact_json_file_with_the_transaction_id()
    {
        var directory = Directory.CreateTempSubdirectory("twopc-logs-");
        try
        {
            await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "jsonlog", TimeSpan.FromSeconds(60),
                new Dictionary<string, string>
                {
                    ["TwoPC:Logging:JsonFile"] = Path.Combine(directory.FullName, "twopc.json"),
                    ["TwoPC:Logging:FileLevel"] = "Debug",
                });
            var seed = await Tpc.RunAsync(["seed", "--sku", "LOG-SKU=5", "--account", "LOG-ACCT=100", .. silo.TpcSettings]);
            Assert.True(seed.ExitCode == 0, seed.ToString());
            var order = await Tpc.RunAsync(["order", "--id", "logged-1", "--account", "LOG-ACCT", "--address", "1 Main St",
                "--line", "LOG-SKU:1:10", .. silo.TpcSettings]);
            Assert.True(order.ExitCode == 0, order.ToString());

            // The file is named by the day it was rolled to (twopcYYYYMMDD.json) and holds one JSON object per line.
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
            while (true)
            {
                var files = directory.GetFiles("twopc*.json");
                var lines = files.SelectMany(f => ReadShared(f.FullName)).ToList();
                var events = lines.Where(l => l.Contains("\"TransactionId\":\"tx-logged-1\"")).ToList();
                if (events.Any(e => e.Contains("Decision")) || DateTime.UtcNow > deadline)
                {
                    var file = Assert.Single(files);
                    Assert.Matches(@"^twopc\d{8}\.json$", file.Name);
                    Assert.All(lines, l => Assert.StartsWith("{\"@t\":", l));
                    Assert.Contains(events, e => e.Contains("Begin"));
                    Assert.Contains(events, e => e.Contains("Decision"));
                    break;
                }
                await Task.Delay(250);
            }
        }
        finally
        {
            directory.Delete(recursive: true);
        }
    }

    private static IEnumerable<string> ReadShared(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
        using var reader = new StreamReader(stream);
        var all = reader.ReadToEnd();
        return all.Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    [Fact]
    public async Task A_silo_without_the_flag_serves_no_dashboard()
    {
        await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "nodash", TimeSpan.FromSeconds(60),
            new Dictionary<string, string> { ["TwoPC:Dashboard:Port"] = ChildSilo.FreePort().ToString() });
        Assert.DoesNotContain("Orleans Dashboard", silo.Output);
    }

    [Fact]
    public async Task An_unknown_role_stops_the_silo_with_one_clear_line()
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(typeof(ChildSilo).Assembly.Location);
        start.ArgumentList.Add("serve");
        start.ArgumentList.Add($"--ConnectionStrings:PostgresServer={postgres.AdminConnectionString}");
        start.ArgumentList.Add("--TwoPC:DatabasePrefix=badrole");
        start.ArgumentList.Add("--TwoPC:Roles=payment,warehouse");
        start.ArgumentList.Add("--TwoPC:Logging:JsonFile=");
        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        log.WriteLine(await output);
        log.WriteLine(await error);
        Assert.Equal(1, process.ExitCode);
        Assert.Contains("error: unknown silo role(s) 'warehouse'", await error);
    }
}
