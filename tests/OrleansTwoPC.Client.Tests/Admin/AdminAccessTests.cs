using System.Net;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Admin;

/// <summary>
/// Access to the operator console: off loopback every request needs a configured bearer token (the silo refuses to
/// start without one), and recover and abort are logged with who asked.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class AdminAccessTests(PostgresFixture postgres, ITestOutputHelper log)
{
    [Theory]
    [InlineData(null, "not loopback: every request then needs a bearer token, and none is configured")]
    [InlineData("short", "TwoPC:Admin:Tokens:alice must be at least 16 characters")]
    public async Task Off_loopback_the_silo_refuses_to_start_without_a_usable_token(string? token, string expected)
    {
        var settings = new Dictionary<string, string>
        {
            ["TwoPC:Admin:Enabled"] = "true",
            ["TwoPC:Admin:Host"] = "0.0.0.0",
            ["TwoPC:Admin:Port"] = ChildSilo.FreePort().ToString(),
        };
        if (token is not null) settings["TwoPC:Admin:Tokens:alice"] = token;
        var prefix = "a_" + Guid.NewGuid().ToString("N")[..12];
        await using var silo = ChildSilo.Start("refused", postgres.AdminConnectionString, prefix, "cluster-" + prefix, "OrleansTwoPC",
            PostgresTopology.DeriveDatabases(postgres.AdminConnectionString, prefix).Coordinator, settings);
        await silo.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(60));
        await Task.Delay(200);
        var lines = silo.LastLines(ChildSilo.DefaultKeptLines).Where(l => !l.StartsWith("[parent ", StringComparison.Ordinal)).ToList();
        log.WriteLine(string.Join('\n', lines));
        Assert.Equal(1, silo.ExitCode);
        var error = Assert.Single(lines, l => l.Contains("error:", StringComparison.Ordinal));
        Assert.Contains(expected, error);
        Assert.DoesNotContain(lines, l => l.Contains("   at ", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Off_loopback_every_request_needs_a_token_and_actions_are_logged_with_its_name()
    {
        var port = ChildSilo.FreePort();
        var alice = Convert.ToHexString(Guid.NewGuid().ToByteArray());
        var bob = Convert.ToHexString(Guid.NewGuid().ToByteArray());
        await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "adminauth", TimeSpan.FromSeconds(90),
            new Dictionary<string, string>
            {
                ["TwoPC:Admin:Enabled"] = "true",
                ["TwoPC:Admin:Host"] = "0.0.0.0",
                ["TwoPC:Admin:Port"] = port.ToString(),
                ["TwoPC:Admin:Tokens:alice"] = alice,
                ["TwoPC:Admin:Tokens:bob"] = bob,
            });
        try
        {
            using var asAlice = new AdminHttp(port, alice);
            await asAlice.WaitUpAsync(TimeSpan.FromSeconds(30));
            Assert.True(await AdminHttp.OutputShowsAsync(() => silo.Output, "bearer token required", TimeSpan.FromSeconds(10)), silo.Output);

            using var anonymous = new AdminHttp(port);
            using var wrong = new AdminHttp(port, alice + "x");
            foreach (var path in new[] { "/api/transactions", "/api/transactions/some-order", "/", "/api/no-such-endpoint" })
            {
                var none = await anonymous.GetAsync(path);
                Assert.True(none.Status == HttpStatusCode.Unauthorized, $"{path}: {none}");
                Assert.Contains("needs a bearer token", none.Error);
                var bad = await wrong.GetAsync(path);
                Assert.True(bad.Status == HttpStatusCode.Unauthorized, $"{path}: {bad}");
                Assert.Contains("not one of this console's tokens", bad.Error);
            }

            // A refused request changes nothing: the abort without a token leaves the id unknown.
            var order = $"order-{Guid.NewGuid():N}"[..20];
            Assert.Equal(HttpStatusCode.Unauthorized, (await anonymous.PostAsync($"/api/transactions/{order}/abort", "{\"reason\":\"test\"}")).Status);
            Assert.Equal(HttpStatusCode.NotFound, (await asAlice.GetAsync($"/api/transactions/{order}")).Status);

            Assert.Equal(HttpStatusCode.OK, (await asAlice.GetAsync("/api/transactions")).Status);
            Assert.Equal(HttpStatusCode.OK, (await asAlice.PostAsync("/api/recover")).Status);
            using var asBob = new AdminHttp(port, bob);
            var aborted = await asBob.PostAsync($"/api/transactions/{order}/abort", "{\"reason\":\"coordinator lost\"}");
            Assert.True(aborted.Status == HttpStatusCode.OK, aborted.ToString());
            Assert.Contains("(by bob", aborted.Body.GetProperty("abortReason").GetString());

            // Who asked is in the silo's log (console at Warning).
            Assert.True(await AdminHttp.OutputShowsAsync(() => silo.Output, "Operator alice (127.0.0.1): recover all", TimeSpan.FromSeconds(10)), silo.Output);
            Assert.True(await AdminHttp.OutputShowsAsync(() => silo.Output, $"Operator bob (127.0.0.1): heuristic abort of tx-{order}", TimeSpan.FromSeconds(10)), silo.Output);
            Assert.DoesNotContain(alice, silo.Output);

            // A browser signs in once at /login (the one page served without a token); the cookie then carries it.
            using var browser = new AdminHttp(port);
            var refusedSignIn = await browser.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/login")
            {
                Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["token"] = bob + "x" }),
            });
            Assert.Equal(HttpStatusCode.Unauthorized, refusedSignIn.Status);
            Assert.Contains("id=\"problem\"", refusedSignIn.Text);
            Assert.Equal(HttpStatusCode.Unauthorized, (await browser.GetAsync("/api/transactions")).Status);
            var signedIn = await browser.SendAsync(new HttpRequestMessage(HttpMethod.Post, "/login")
            {
                Content = new FormUrlEncodedContent(new Dictionary<string, string> { ["token"] = bob }),
            });
            Assert.True(signedIn.Status == HttpStatusCode.OK, signedIn.ToString());
            Assert.Contains("OrleansTwoPC operator console", signedIn.Text);
            Assert.Equal(HttpStatusCode.OK, (await browser.GetAsync("/api/transactions")).Status);
        }
        catch
        {
            log.WriteLine(silo.Output);
            throw;
        }
    }
}
