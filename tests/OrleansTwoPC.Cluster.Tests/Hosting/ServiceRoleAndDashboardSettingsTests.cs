using Microsoft.Extensions.Configuration;
using OrleansTwoPC.Grains.Placement;
using OrleansTwoPC.Silo.Hosting;

namespace OrleansTwoPC.Cluster.Tests.Hosting;

/// <summary>The settings that pick a silo's service roles and turn the Orleans Dashboard on.</summary>
public sealed class ServiceRoleAndDashboardSettingsTests
{
    [Theory]
    [InlineData(null, "all")]
    [InlineData("", "all")]
    [InlineData("all", "all")]
    [InlineData("payment", "payment")]
    [InlineData(" Shipping , coordinator ", "coordinator,shipping")]
    [InlineData("payment,payment", "payment")]
    [InlineData("coordinator,inventory,payment,shipping", "all")]
    [InlineData("inventory,all", "all")]
    public void Roles_are_normalized(string? setting, string expected) =>
        Assert.Equal(expected, ServiceRoles.Normalize(setting));

    [Theory]
    [InlineData("paymnet")]
    [InlineData("payment,warehouse")]
    public void Unknown_roles_are_a_clear_error(string setting)
    {
        var error = Assert.Throws<ArgumentException>(() => ServiceRoles.Normalize(setting));
        Assert.Contains("unknown silo role", error.Message);
        Assert.Contains("coordinator, inventory, payment, shipping", error.Message);
    }

    [Theory]
    [InlineData("all", "payment", true)]
    [InlineData("payment", "payment", true)]
    [InlineData("coordinator,inventory,shipping", "payment", false)]
    [InlineData("coordinator,inventory,shipping", "inventory", true)]
    [InlineData(null, "payment", false)]
    [InlineData("", "coordinator", false)]
    public void A_silo_hosts_only_its_roles(string? siloRoles, string role, bool hosts) =>
        Assert.Equal(hosts, ServiceRoles.Hosts(siloRoles, role));

    [Fact]
    public void The_dashboard_is_off_unless_enabled()
    {
        Assert.Null(SiloHostBuilder.DashboardUrl(Settings()));
        Assert.Null(SiloHostBuilder.DashboardUrl(Settings(("TwoPC:Dashboard:Enabled", "false"), ("TwoPC:Dashboard:Port", "9000"))));
    }

    [Fact]
    public void The_dashboard_binds_to_loopback_by_default()
    {
        Assert.Equal("http://127.0.0.1:8080", SiloHostBuilder.DashboardUrl(Settings(("TwoPC:Dashboard:Enabled", "true"))));
        Assert.Equal("http://127.0.0.1:9100", SiloHostBuilder.DashboardUrl(Settings(("TwoPC:Dashboard:Enabled", "True"), ("TwoPC:Dashboard:Port", "9100"))));
        Assert.Equal("http://0.0.0.0:8080", SiloHostBuilder.DashboardUrl(Settings(("TwoPC:Dashboard:Enabled", "true"), ("TwoPC:Dashboard:Host", "0.0.0.0"))));
        Assert.Equal("http://[::1]:8080", SiloHostBuilder.DashboardUrl(Settings(("TwoPC:Dashboard:Enabled", "true"), ("TwoPC:Dashboard:Host", "::1"))));
    }

    [Theory]
    [InlineData("Enabled", "yes", "must be true or false")]
    [InlineData("Port", "70000", "must be a TCP port")]
    [InlineData("Port", "web", "must be a TCP port")]
    [InlineData("Host", "dashboard.example.com", "must be an IP address or localhost")]
    public void Bad_dashboard_settings_are_a_clear_error(string key, string value, string expected)
    {
        var settings = key == "Enabled"
            ? Settings(("TwoPC:Dashboard:Enabled", value))
            : Settings(("TwoPC:Dashboard:Enabled", "true"), ($"TwoPC:Dashboard:{key}", value));
        var error = Assert.Throws<InvalidOperationException>(() => SiloHostBuilder.DashboardUrl(settings));
        Assert.Contains(expected, error.Message);
    }

    private static IConfiguration Settings(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();
}
