using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Configuration;
using OrleansTwoPC.Grains.Placement;
using OrleansTwoPC.Silo.Admin;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Silo.Hosting;
using OrleansTwoPC.Storage;
using Serilog;
using Serilog.Extensions.Logging;

// Usage:
//   OrleansTwoPC.Silo demo [--TwoPC:Demo:Concurrency=32 ...]   seeds, runs concurrent orders, reconciles (the main job)
//   OrleansTwoPC.Silo serve                                    runs a silo until Ctrl+C
//   OrleansTwoPC.Silo cluster-demo                             2 silo processes, one SIGKILLed mid-run and replaced, recovery, reconciliation
// With no connection string configured, an embedded throwaway PostgreSQL is started and removed on exit.
var command = args.FirstOrDefault(a => !a.StartsWith('-')) ?? "demo";
var settings = args.Where(a => a != command).ToArray();
if (command is "help" || args.Any(a => a is "-h" or "--help"))
{
    Console.WriteLine("usage: OrleansTwoPC.Silo [demo|serve|cluster-demo] [--Key=Value ...]");
    Console.WriteLine("  demo   start a silo, seed, place concurrent orders (some abort), print outcomes and a reconciliation");
    Console.WriteLine("  serve  run a silo until stopped");
    Console.WriteLine("  cluster-demo  start 2 silo processes, stream orders, SIGKILL and replace one silo mid-run, wait for recovery, reconcile");
    Console.WriteLine("  provision  with an admin connection: create the databases, schema and one PostgreSQL login per service (TwoPC:Logins:<service>:Password)");
    Console.WriteLine("configuration: appsettings.json, environment (ConnectionStrings__PostgresServer=...), --ConnectionStrings:PostgresServer=...");
    Console.WriteLine("  --TwoPC:Roles=all|coordinator,inventory,payment,shipping   services this silo hosts (default all)");
    Console.WriteLine("  --TwoPC:Dashboard:Enabled=true [--TwoPC:Dashboard:Port=8080 --TwoPC:Dashboard:Host=127.0.0.1]   Orleans Dashboard");
    Console.WriteLine("  --TwoPC:Tls:CertificatePath=FILE --TwoPC:Tls:CaPath=FILE [--TwoPC:Tls:KeyPath=FILE --TwoPC:Tls:PasswordFile=FILE]   mutual TLS between silos and clients");
    Console.WriteLine("  --TwoPC:Admin:Enabled=true [--TwoPC:Admin:Port=8081 --TwoPC:Admin:Host=127.0.0.1 --TwoPC:Admin:Tokens:NAME=SECRET]   operator console and HTTP admin API");
    Console.WriteLine("  --TwoPC:Health:Port=8088 [--TwoPC:Health:Host=127.0.0.1]   liveness and readiness probes: /health/live, /health/ready");
    return 0;
}
if (command is not ("demo" or "serve" or "cluster-demo" or "provision"))
{
    Console.Error.WriteLine($"unknown command '{command}' (expected demo, serve, cluster-demo or provision; see --help)");
    return 2;
}
if (command == "cluster-demo")
    return await RunClusterDemoAsync(settings);
if (command == "provision")
    return await ProvisionCommand.RunAsync(settings, Console.Out, Console.Error);

// appsettings.json is read from beside the executable, so the command works from any directory.
// With the Orleans Dashboard or the operator console on, the silo runs inside an ASP.NET Core host that serves them.
IHostApplicationBuilder builder;
try
{
    builder = SiloHostBuilder.Create(settings);
    // Inside the try: a bad log level is one line too, before any logger exists to report it.
    Log.Logger = LoggingSetup.Configure(new LoggerConfiguration(), builder.Configuration).CreateLogger();
}
catch (SiloStartupException ex)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 1;
}
builder.Services.AddSerilog();
using var cancel = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };

try
{
    // Ports first: a taken one is one clear line, before PostgreSQL or Orleans start.
    var endpoints = SiloEndpoints.FromConfiguration(builder.Configuration);
    using var ports = PortReservation.Acquire(endpoints.Listeners);
    // Certificates next: a bad file is one clear line too.
    var tls = SiloTls.Load(builder.Configuration);
    var startupLogger = new SerilogLoggerFactory(Log.Logger).CreateLogger("OrleansTwoPC.Startup");
    // Only the databases of this silo's services (and the cluster's): it may hold no other credentials.
    var roles = ServiceRoles.Normalize(builder.Configuration[ServiceRoles.ConfigurationKey]);
    var required = ServiceLogins.DatabasesFor(ServiceRoles.Every.Where(r => ServiceRoles.Hosts(roles, r)));
    await using var postgres = await PostgresTopology.StartAsync(builder.Configuration, startupLogger, required, cancel.Token);
    var databases = postgres.Databases;

    builder.UseOrleans(silo =>
    {
        silo.Configure<ClusterOptions>(o =>
        {
            o.ClusterId = builder.Configuration["TwoPC:ClusterId"] ?? "twopc";
            o.ServiceId = builder.Configuration["TwoPC:ServiceId"] ?? "OrleansTwoPC";
        });
        silo.UseAdoNetClustering(o =>
        {
            o.Invariant = TwoPhaseCommitSiloExtensions.AdoNetInvariant;
            o.ConnectionString = databases.Coordinator;
        });
        silo.ConfigureEndpoints(endpoints.AdvertisedIp, endpoints.SiloPort, endpoints.GatewayPort);
        silo.ReleasePortsBeforeListening(ports);
        silo.AddTwoPhaseCommit(databases, builder.Configuration);
        if (tls is not null) silo.UseClusterTls(tls, startupLogger);
        SiloHostBuilder.AddDashboardIfEnabled(silo, builder);
    });

    using var host = SiloHostBuilder.Build(builder);
    await host.StartAsync(cancel.Token);
    int exitCode = 0;
    if (command == "demo")
    {
        var options = builder.Configuration.GetSection("TwoPC:Demo").Get<DemoOptions>() ?? new DemoOptions();
        var grains = host.Services.GetRequiredService<IGrainFactory>();
        exitCode = await new DemoRunner(grains, databases, Console.Out).RunAsync(options, cancel.Token);
    }
    else
    {
        if (postgres.Source == PostgresSource.Embedded)
            Console.WriteLine($"Embedded PostgreSQL: tpc --ConnectionStrings:PostgresServer=\"{postgres.ServerConnectionString}\" ...");
        Console.WriteLine($"Silo running with roles: {ServiceRoles.Normalize(builder.Configuration[ServiceRoles.ConfigurationKey])}");
        Console.WriteLine(tls is null ? "Cluster TLS: off" : $"Cluster TLS: on, mutual, certificate {tls.Describe()}");
        if (SiloHostBuilder.DashboardUrl(builder.Configuration) is { } dashboard)
            Console.WriteLine($"Orleans Dashboard: {dashboard}");
        if (AdminSettings.FromConfiguration(builder.Configuration) is { } admin)
            Console.WriteLine($"Operator console: {admin.Url}/ (API {admin.Url}/api/transactions{(admin.RequiresToken ? "; bearer token required" : "")})");
        if (HealthSettings.FromConfiguration(builder.Configuration) is { } health)
            Console.WriteLine($"Health probes: {health.Url}{HealthSettings.LivePath} and {health.Url}{HealthSettings.ReadyPath}");
        Console.WriteLine("Silo running; Ctrl+C or SIGTERM stops it gracefully");
        // The host's console lifetime turns SIGTERM and Ctrl+C into a graceful stop.
        await host.WaitForShutdownAsync(CancellationToken.None);
    }
    await host.StopAsync(CancellationToken.None);
    return exitCode;
}
catch (OperationCanceledException) when (cancel.IsCancellationRequested)
{
    return 130;
}
catch (Exception ex) when (ex is SiloStartupException or PostgresSettingsException)
{
    Console.Error.WriteLine($"error: {ex.Message}");
    return 1;
}
catch (Exception ex)
{
    Log.Fatal(ex, "Silo failed");
    Console.Error.WriteLine($"error: {ex.GetBaseException().Message}");
    return 1;
}
finally
{
    await Log.CloseAndFlushAsync();
}

// The cluster demo runs no silo in this process: it starts PostgreSQL (unless configured), launches silo
// processes of this executable and talks to them as an Orleans client.
static async Task<int> RunClusterDemoAsync(string[] settings)
{
    var configuration = SiloHostBuilder.ReadConfiguration(settings);
    Log.Logger = new LoggerConfiguration().MinimumLevel.Warning()
        .WriteTo.Console(outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {SourceContext}: {Message:lj}{NewLine}{Exception}")
        .CreateLogger();
    using var cancel = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; cancel.Cancel(); };
    using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(
        System.Runtime.InteropServices.PosixSignal.SIGTERM, context => { context.Cancel = true; cancel.Cancel(); });
    try
    {
        var logger = new SerilogLoggerFactory(Log.Logger).CreateLogger("OrleansTwoPC.ClusterDemo");
        return await ClusterDemo.RunAsync(configuration, logger, Console.Out, cancel.Token);
    }
    catch (OperationCanceledException) when (cancel.IsCancellationRequested)
    {
        Console.Error.WriteLine("cancelled; child processes and databases cleaned up");
        return 130;
    }
    catch (Exception ex)
    {
        Console.Error.WriteLine($"error: {ex.GetBaseException().Message}");
        Console.WriteLine($"RESULT: FAILED - {ex.GetBaseException().Message}");
        return 1;
    }
    finally
    {
        await Log.CloseAndFlushAsync();
    }
}
