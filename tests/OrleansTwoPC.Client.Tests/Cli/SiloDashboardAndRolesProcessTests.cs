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
