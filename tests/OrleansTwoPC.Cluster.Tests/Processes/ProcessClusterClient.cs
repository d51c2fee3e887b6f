using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;

namespace OrleansTwoPC.Cluster.Tests.Processes;

/// <summary>
/// An ordinary Orleans client in the test process, talking to silo processes through their gateways.
/// It finds the gateways in the membership table (ADO.NET clustering on the coordinator database) and
/// refreshes that list every second, so it stops using a killed silo's gateway quickly.
/// </summary>
public sealed class ProcessClusterClient : IAsyncDisposable
{
    private readonly IHost _host;

    private ProcessClusterClient(IHost host) => _host = host;

    public IClusterClient Client => _host.Services.GetRequiredService<IClusterClient>();
    public IGrainFactory Grains => Client;

    public static async Task<ProcessClusterClient> ConnectAsync(ProcessClusterSettings cluster, TimeSpan responseTimeout, CancellationToken cancellationToken = default)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.UseOrleansClient(client =>
        {
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = cluster.ClusterId;
                o.ServiceId = ProcessClusterSettings.ServiceId;
            });
            client.UseAdoNetClustering(o =>
            {
                o.Invariant = "Npgsql";
                o.ConnectionString = cluster.Databases.Coordinator;
            });
            client.Configure<GatewayOptions>(o => o.GatewayListRefreshPeriod = TimeSpan.FromSeconds(1));
            client.Configure<ClientMessagingOptions>(o => o.ResponseTimeout = responseTimeout);
        });
        var host = builder.Build();
        try
        {
            await host.StartAsync(cancellationToken);
            return new ProcessClusterClient(host);
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await _host.StopAsync(stop.Token);
        }
        catch
        {
            // The gateways may be gone already; disposal below releases everything anyway.
        }
        _host.Dispose();
    }
}
