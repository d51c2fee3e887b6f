using OrleansTwoPC.Abstractions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Orleans.Configuration;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Client.Tests.Infrastructure;

/// <summary>
/// An ordinary Orleans client in the test process (the library path, with Orleans' default settings),
/// joined to a <see cref="SiloServer"/>'s cluster through the membership table.
/// </summary>
public sealed class LibraryClient : IAsyncDisposable
{
    private readonly IHost _host;

    private LibraryClient(IHost host) => _host = host;

    public IGrainFactory Grains => _host.Services.GetRequiredService<IClusterClient>();

    public static Task<LibraryClient> ConnectAsync(SiloServer silo) =>
        ConnectAsync(PostgresTopology.DeriveDatabases(silo.AdminConnectionString, silo.Prefix).Coordinator, silo.ClusterId);

    public static async Task<LibraryClient> ConnectAsync(string coordinatorDatabase, string clusterId)
    {
        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.UseOrleansClient(client =>
        {
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = clusterId;
                o.ServiceId = "OrleansTwoPC";
            });
            client.UseAdoNetClustering(o =>
            {
                o.Invariant = "Npgsql";
                o.ConnectionString = coordinatorDatabase;
            });
        });
        var host = builder.Build();
        try
        {
            await host.StartAsync();
            return new LibraryClient(host);
        }
        catch
        {
            host.Dispose();
            throw;
        }
    }

    /// <summary>True when a client that has only the shared contract (OrleansTwoPC.Abstractions) and the
    /// base library could have deserialized <paramref name="exception"/> and every exception inside it.</summary>
    public static bool IsContractOrBaseLibrary(Exception exception)
    {
        for (Exception? current = exception; current is not null; current = current.InnerException)
        {
            var assembly = current.GetType().Assembly;
            var name = assembly.GetName().Name ?? "";
            var allowed = assembly == typeof(OrderOutcome).Assembly || assembly == typeof(object).Assembly || name.StartsWith("System.", StringComparison.Ordinal);
            if (!allowed) return false;
            if (current is AggregateException aggregate && !aggregate.InnerExceptions.All(IsContractOrBaseLibrary)) return false;
        }

        return true;
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
            // The silos may be gone; disposal below releases everything anyway.
        }

        _host.Dispose();
    }
}
