using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;

namespace OrleansTwoPC.Benchmark.Hosting;

/// <summary>
/// A single-silo host inside the benchmark process, so the load generator calls grains without a network
/// hop, the same way for A and B. Both silos see every grain class of the process; each keeps only its own.
/// </summary>
public static class BenchmarkSiloHost
{
    public static IHost Build(string name, IConfiguration configuration, Func<Type, bool> isForeignGrainClass, Action<ISiloBuilder> configure)
    {
        var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings
        {
            // No appsettings, environment or console lifetime: the benchmark decides everything itself.
            DisableDefaults = true,
            ApplicationName = name,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Configuration.AddConfiguration(configuration);
        builder.Logging
            .AddSimpleConsole(o => o.SingleLine = true)
            .SetMinimumLevel(LogLevel.Warning)
            // Orleans warns about slow calls and aborted transactions under load; those are measured, not logged.
            .AddFilter("Orleans", LogLevel.Error);
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering(FreePort(), FreePort(), serviceId: name, clusterId: name);
            silo.Services.Configure<GrainTypeOptions>(o => o.Classes.RemoveWhere(t => isForeignGrainClass(t)));
            configure(silo);
        });
        return builder.Build();
    }

    private static int FreePort()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        try
        {
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
        finally
        {
            listener.Stop();
        }
    }
}
