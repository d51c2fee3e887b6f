using CsCheck;
using Microsoft.Extensions.Configuration;
using OrleansTwoPC.Grains.Placement;
using OrleansTwoPC.Silo.Hosting;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Cluster.Tests.Hosting;

/// <summary><c>TwoPC:Health</c>: which settings switch the probes on, which are refused, and what readiness checks.</summary>
public sealed class HealthSettingsTests
{
    private static IConfiguration Settings(params (string Key, string? Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();

    [Fact]
    public void Without_a_port_the_probes_are_off()
    {
        Assert.Null(HealthSettings.FromConfiguration(Settings()));
        Assert.Null(HealthSettings.FromConfiguration(Settings(("TwoPC:Health:Port", " "))));
    }

    [Fact]
    public void Every_tcp_port_is_accepted_on_loopback_by_default() =>
        Gen.Int[1, 65535].Sample(port =>
        {
            var settings = HealthSettings.FromConfiguration(Settings(("TwoPC:Health:Port", port.ToString())));
            Assert.Equal(new HealthSettings("127.0.0.1", port), settings);
            Assert.Equal($"http://127.0.0.1:{port}", settings!.Url);
        });

    [Fact]
    public void A_port_outside_1_to_65535_or_not_a_number_is_a_clear_error() =>
        Gen.OneOf(
                Gen.Int[int.MinValue, 0].Select(p => p.ToString()),
                Gen.Int[65536, int.MaxValue].Select(p => p.ToString()),
                Gen.String[Gen.Char.AlphaNumeric, 1, 8].Where(s => !int.TryParse(s, out _)))
            .Sample(text =>
            {
                var error = Assert.Throws<SiloStartupException>(() => HealthSettings.FromConfiguration(Settings(("TwoPC:Health:Port", text))));
                Assert.Equal($"TwoPC:Health:Port must be a TCP port (1-65535), not '{text}'", error.Message);
            });

    [Theory]
    [InlineData("0.0.0.0", "http://0.0.0.0:8088")]
    [InlineData("::", "http://[::]:8088")]
    [InlineData("localhost", "http://localhost:8088")]
    public void The_host_may_be_any_address(string host, string url) =>
        Assert.Equal(url, HealthSettings.FromConfiguration(Settings(("TwoPC:Health:Port", "8088"), ("TwoPC:Health:Host", host)))!.Url);

    [Fact]
    public void A_host_name_or_a_host_without_a_port_is_a_clear_error()
    {
        var name = Assert.Throws<SiloStartupException>(() =>
            HealthSettings.FromConfiguration(Settings(("TwoPC:Health:Port", "8088"), ("TwoPC:Health:Host", "silo.example"))));
        Assert.Contains("TwoPC:Health:Host must be an IP address or localhost", name.Message);
        var portless = Assert.Throws<SiloStartupException>(() => HealthSettings.FromConfiguration(Settings(("TwoPC:Health:Host", "0.0.0.0"))));
        Assert.Contains("TwoPC:Health:Port is not", portless.Message);
    }

    [Fact]
    public void The_health_port_clashing_with_another_listener_is_a_clear_error()
    {
        var error = Assert.Throws<SiloStartupException>(() =>
            SiloEndpoints.FromConfiguration(Settings(("TwoPC:GatewayPort", "30123"), ("TwoPC:Health:Port", "30123"))));
        Assert.Equal("TwoPC:GatewayPort and TwoPC:Health:Port are both 30123; each listener needs its own port", error.Message);
    }

    [Theory]
    [InlineData("all", new[] { "Inventory", "Payments", "Shipping", "Coordinator" })]
    [InlineData("coordinator", new[] { "Coordinator" })]
    [InlineData("inventory", new[] { "Inventory", "Coordinator" })]
    [InlineData("payment", new[] { "Payments", "Coordinator" })]
    [InlineData("shipping", new[] { "Shipping", "Coordinator" })]
    [InlineData("inventory,shipping", new[] { "Inventory", "Shipping", "Coordinator" })]
    public void Readiness_checks_the_roles_databases_and_the_membership_database(string roles, string[] expected)
    {
        var run = Guid.NewGuid().ToString("N");
        var databases = new ServiceDatabases($"Database=i{run}", $"Database=p{run}", $"Database=s{run}", $"Database=c{run}");
        var used = HealthProbes.DatabasesFor(ServiceRoles.Normalize(roles), databases);
        Assert.Equal(expected, used.Select(d => d.Key));
        Assert.All(used, d => Assert.Equal(databases[d.Key], d.Value));
    }
}
