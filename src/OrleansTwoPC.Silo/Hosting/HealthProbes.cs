using System.Globalization;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Orleans.Runtime;
using OrleansTwoPC.Grains.Placement;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// <c>TwoPC:Health</c>: liveness and readiness probes over plain HTTP on a port of their own
/// (<c>TwoPC:Health:Port</c>; setting it switches the probes on), for a container engine or a kubelet.
/// They carry no token and show only up/down and why, so they may listen off loopback
/// (<c>TwoPC:Health:Host=0.0.0.0</c> in a container); the operator console keeps its own port and tokens.
/// </summary>
public sealed record HealthSettings(string Host, int Port)
{
    public const string Section = "TwoPC:Health";
    public const string LivePath = "/health/live";
    public const string ReadyPath = "/health/ready";

    public string Url => $"http://{(Host.Contains(':') ? $"[{Host}]" : Host)}:{Port}";

    /// <summary>The probes' settings when <c>TwoPC:Health:Port</c> is set, else null. Bad settings are a <see cref="SiloStartupException"/>.</summary>
    public static HealthSettings? FromConfiguration(IConfiguration configuration)
    {
        var section = configuration.GetSection(Section);
        var portText = section["Port"];
        var hostText = section["Host"];
        if (string.IsNullOrWhiteSpace(portText))
        {
            return string.IsNullOrWhiteSpace(hostText)
                ? null
                : throw new SiloStartupException($"{Section}:Host is set but {Section}:Port is not: the probes need a port of their own");
        }

        if (!int.TryParse(portText, NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            throw new SiloStartupException($"{Section}:Port must be a TCP port (1-65535), not '{portText}'");
        var host = string.IsNullOrWhiteSpace(hostText) ? IPAddress.Loopback.ToString() : hostText.Trim();
        if (host != "localhost" && !IPAddress.TryParse(host, out _))
            throw new SiloStartupException($"{Section}:Host must be an IP address or localhost, not '{hostText}'");
        return new HealthSettings(host, port);
    }
}

/// <summary>One readiness condition and how it stands.</summary>
public sealed record HealthCheckResult(string Name, bool Healthy, string Detail);

/// <summary>A probe's answer: <c>Healthy</c> or <c>Unhealthy</c> and the checks behind it.</summary>
public sealed record HealthReport(string Status, IReadOnlyList<HealthCheckResult> Checks);

/// <summary>
/// <c>GET /health/live</c>: 200 while the process serves requests; it does not look at PostgreSQL, since
/// restarting the silo would not bring a database back. <c>GET /health/ready</c>: 200 when every database
/// this silo's roles use answers (the coordinator database, which holds the membership table, always) and
/// the silo is Active in the cluster's membership; else 503, each failed check with its reason.
/// </summary>
public static class HealthProbes
{
    /// <summary>Each database check gives up after this long, so a probe answers before an engine's timeout.</summary>
    public static readonly TimeSpan DatabaseTimeout = TimeSpan.FromSeconds(3);

    public static void MapHealthProbes(this WebApplication app, HealthSettings settings)
    {
        var host = $"*:{settings.Port}";
        app.MapGet(HealthSettings.LivePath, () => Results.Json(new HealthReport("Healthy", []))).RequireHost(host);
        app.MapGet(HealthSettings.ReadyPath, async (HttpContext context) =>
        {
            var report = await ReadinessAsync(context.RequestServices, context.RequestAborted);
            return Results.Json(report, statusCode: report.Status == "Healthy" ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable);
        }).RequireHost(host);
    }

    /// <summary>The databases a silo with these roles reads and writes: its services' own and the coordinator's (membership).</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> DatabasesFor(string roles, ServiceDatabases databases)
    {
        var used = new List<string> { "Coordinator" };
        foreach (var (role, database) in new[]
                 {
                     (ServiceRoles.Inventory, "Inventory"),
                     (ServiceRoles.Payment, "Payments"),
                     (ServiceRoles.Shipping, "Shipping"),
                 })
        {
            if (ServiceRoles.Hosts(roles, role)) used.Add(database);
        }

        return databases.All.Where(d => used.Contains(d.Key)).ToList();
    }

    public static async Task<HealthReport> ReadinessAsync(IServiceProvider services, CancellationToken cancellationToken)
    {
        var databases = services.GetRequiredService<ServiceDatabases>();
        var roles = ServiceRoles.Normalize(services.GetRequiredService<IConfiguration>()[ServiceRoles.ConfigurationKey]);
        var checks = await Task.WhenAll(DatabasesFor(roles, databases).Select(d => DatabaseAsync(d.Key, d.Value, cancellationToken)));
        var results = checks.Append(Membership(services)).ToList();
        return new HealthReport(results.All(r => r.Healthy) ? "Healthy" : "Unhealthy", results);
    }

    private static async Task<HealthCheckResult> DatabaseAsync(string name, string connectionString, CancellationToken cancellationToken)
    {
        var check = $"postgres:{name}";
        // Outside the silo's pools: a probe must neither wait behind busy pooled connections nor leave one open.
        var probe = new NpgsqlConnectionStringBuilder(connectionString)
        {
            Pooling = false,
            Timeout = (int)DatabaseTimeout.TotalSeconds,
            CommandTimeout = (int)DatabaseTimeout.TotalSeconds,
        };
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(DatabaseTimeout);
        try
        {
            await using var connection = new NpgsqlConnection(probe.ConnectionString);
            await connection.OpenAsync(timeout.Token);
            await using var command = new NpgsqlCommand("SELECT 1", connection);
            await command.ExecuteScalarAsync(timeout.Token);
            return new HealthCheckResult(check, true, $"database {probe.Database} answers");
        }
        catch (Exception ex) when (ex is NpgsqlException or OperationCanceledException or TimeoutException or System.Net.Sockets.SocketException)
        {
            var reason = ex is OperationCanceledException ? $"no answer within {DatabaseTimeout.TotalSeconds:0} s" : ex.GetBaseException().Message;
            return new HealthCheckResult(check, false, $"database {probe.Database} on {probe.Host}:{probe.Port} unreachable: {reason}");
        }
    }

    private static HealthCheckResult Membership(IServiceProvider services)
    {
        var self = services.GetRequiredService<ILocalSiloDetails>().SiloAddress;
        var status = services.GetRequiredService<IClusterMembershipService>().CurrentSnapshot.GetSiloStatus(self);
        return new HealthCheckResult("membership", status == SiloStatus.Active, $"silo {self} is {status} in the cluster's membership");
    }
}
