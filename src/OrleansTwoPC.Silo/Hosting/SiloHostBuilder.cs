using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Orleans.Dashboard;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OrleansTwoPC.Grains.Telemetry;
using OrleansTwoPC.Silo.Admin;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// Builds the silo's host. Without the dashboard it is a plain generic host; with
/// <c>TwoPC:Dashboard:Enabled=true</c> it is an ASP.NET Core host that also serves the Orleans Dashboard,
/// bound to loopback unless <c>TwoPC:Dashboard:Host</c> says otherwise. With <c>TwoPC:Admin:Enabled=true</c> the
/// same web host serves the operator console (<see cref="AdminApi"/>) on its own port; either needs no other.
/// </summary>
public static class SiloHostBuilder
{
    public const string DashboardSection = "TwoPC:Dashboard";
    public const int DefaultDashboardPort = 8080;

    /// <summary>The silo executable's settings as every command reads them: appsettings.json beside the
    /// executable, then the environment, then <c>--Key=Value</c> arguments.</summary>
    public static IConfigurationRoot ReadConfiguration(string[] args) => new ConfigurationBuilder()
        .SetBasePath(AppContext.BaseDirectory)
        .AddJsonFile("appsettings.json", optional: true)
        .AddEnvironmentVariables()
        .AddCommandLine(args)
        .Build();

    public static IHostApplicationBuilder Create(string[] args)
    {
        var probe = ReadConfiguration(args);
        var prometheus = AdminSettings.PrometheusEnabled(probe);
        var urls = new[] { DashboardUrl(probe), AdminSettings.FromConfiguration(probe)?.Url, HealthSettings.FromConfiguration(probe)?.Url }.OfType<string>().ToArray();
        if (urls.Length == 0)
            return Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { Args = args, ContentRootPath = AppContext.BaseDirectory });

        var web = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        web.WebHost.UseUrls(urls);
        if (prometheus)
        {
            // Joins the console/OTLP pipeline when one is configured too: one meter provider, several readers.
            web.Services.AddOpenTelemetry().WithMetrics(m => m.AddMeter(TwoPcTelemetry.MeterName).AddPrometheusExporter());
            web.Services.AddHostedService<InDoubtGauges>();
        }

        return web;
    }

    /// <summary>The dashboard's address when it is enabled, else null. Bad settings are a clear error.</summary>
    public static string? DashboardUrl(IConfiguration configuration)
    {
        var section = configuration.GetSection(DashboardSection);
        var enabled = section["Enabled"];
        if (string.IsNullOrWhiteSpace(enabled)) return null;
        if (!bool.TryParse(enabled, out var on))
            throw new InvalidOperationException($"{DashboardSection}:Enabled must be true or false, not '{enabled}'");
        if (!on) return null;
        var host = section["Host"];
        if (string.IsNullOrWhiteSpace(host)) host = IPAddress.Loopback.ToString();
        else if (!IPAddress.TryParse(host, out _) && host != "localhost")
            throw new InvalidOperationException($"{DashboardSection}:Host must be an IP address or localhost, not '{host}'");
        var portText = section["Port"];
        var port = DefaultDashboardPort;
        if (!string.IsNullOrWhiteSpace(portText) && (!int.TryParse(portText, out port) || port is < 1 or > 65535))
            throw new InvalidOperationException($"{DashboardSection}:Port must be a TCP port (1-65535), not '{portText}'");
        return $"http://{(host.Contains(':') ? $"[{host}]" : host)}:{port}";
    }

    public static void AddDashboardIfEnabled(ISiloBuilder silo, IHostApplicationBuilder builder)
    {
        if (DashboardUrl(builder.Configuration) is not null) silo.AddDashboard();
    }

    public static IHost Build(IHostApplicationBuilder builder)
    {
        switch (builder)
        {
            case WebApplicationBuilder web:
                var app = web.Build();
                var admin = AdminSettings.FromConfiguration(app.Configuration);
                var health = HealthSettings.FromConfiguration(app.Configuration);
                if (DashboardUrl(app.Configuration) is { } dashboard)
                {
                    var mapped = app.MapOrleansDashboard();
                    // The console and the probes have their own ports: the dashboard answers only on its own.
                    if (admin is not null || health is not null) mapped.RequireHost($"*:{new Uri(dashboard).Port}");
                }

                if (health is not null) app.MapHealthProbes(health);

                if (admin is not null) app.MapAdmin(admin);
                if (AdminSettings.PrometheusEnabled(app.Configuration)) app.MapPrometheusScrapingEndpoint().RequireHost($"*:{admin!.Port}");
                return app;
            case HostApplicationBuilder plain:
                return plain.Build();
            default:
                throw new InvalidOperationException($"unexpected host builder {builder.GetType().Name}");
        }
    }
}
