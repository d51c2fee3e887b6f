using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using Orleans.Configuration;
using Orleans.Connections.Security;
using OrleansTwoPC.Abstractions.Security;

namespace OrleansTwoPC.Client;

/// <summary>
/// An Orleans client joined to the cluster through ADO.NET clustering on the coordinator database (the
/// membership table lists the silos' gateways). Connecting fails within <see cref="ClientSettings.ConnectTimeout"/>
/// with a <see cref="CliException"/> (exit code 2) instead of retrying forever.
/// </summary>
public sealed class ClusterConnection : IAsyncDisposable
{
    private const string AdoNetInvariant = "Npgsql";
    private readonly IHost _host;

    private ClusterConnection(IHost host)
    {
        _host = host;
        Client = host.Services.GetRequiredService<IClusterClient>();
    }

    public IClusterClient Client { get; }

    public static async Task<ClusterConnection> ConnectAsync(ClientSettings settings, CancellationToken cancellationToken)
    {
        var coordinator = settings.CoordinatorDatabase();
        var tls = settings.Tls();
        var clusterId = settings.ClusterId;
        var serviceId = settings.ServiceId;
        var builder = new HostApplicationBuilder(new HostApplicationBuilderSettings
        {
            DisableDefaults = true,
            ContentRootPath = AppContext.BaseDirectory,
        });
        builder.Logging.ClearProviders();
        if (settings.LogLevel != LogLevel.None)
        {
            builder.Logging.SetMinimumLevel(settings.LogLevel);
            builder.Logging.AddConsole(o => o.LogToStandardErrorThreshold = LogLevel.Trace);
        }

        var responseTimeout = settings.ResponseTimeout;
        string? refusedGateway = null;
        builder.UseOrleansClient(client =>
        {
            client.Configure<ClusterOptions>(o =>
            {
                o.ClusterId = clusterId;
                o.ServiceId = serviceId;
            });
            client.UseAdoNetClustering(o =>
            {
                o.Invariant = AdoNetInvariant;
                o.ConnectionString = coordinator;
            });
            client.Configure<ClientMessagingOptions>(o => o.ResponseTimeout = responseTimeout);
            if (tls is not null)
            {
                client.UseTls(tls.Certificate, o =>
                {
                    o.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
                    o.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
                    o.RemoteCertificateValidation = (certificate, chain, _) =>
                    {
                        if (tls.ValidatePeer(certificate, chain, out var reason)) return true;
                        refusedGateway = reason;
                        return false;
                    };
                });
            }

            // No retry: with no gateway the first attempt fails, and that is the answer.
            client.UseConnectionRetryFilter((_, _) => Task.FromResult(false));
        });

        var host = builder.Build();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(settings.ConnectTimeout);
        var where = $"cluster '{clusterId}' (service '{serviceId}', membership in {ClientSettings.Describe(coordinator)})";
        try
        {
            await host.StartAsync(timeout.Token).WaitAsync(timeout.Token).ConfigureAwait(false);
            return new ClusterConnection(host);
        }
        catch (Exception ex)
        {
            await DisposeQuietlyAsync(host).ConfigureAwait(false);
            if (cancellationToken.IsCancellationRequested)
            {
                throw new OperationCanceledException(cancellationToken);
            }

            throw ex switch
            {
                _ when refusedGateway is not null =>
                    CliException.Connection($"cannot connect to {where}: TLS: the gateway's certificate is not trusted: {refusedGateway}", ex),
                OperationCanceledException or TimeoutException when timeout.IsCancellationRequested =>
                    CliException.Connection($"cannot connect to {where}: no answer within {settings.ConnectTimeout.TotalSeconds:0.#} s"),
                _ when FindDatabaseError(ex) is { } database =>
                    CliException.Connection($"storage unavailable: cannot read the membership table of {where}: {Output.OneLine(database.Message)}", ex),
                _ when Find(ex, e => e is SiloUnavailableException) is not null =>
                    CliException.Connection($"cannot connect to {where}: no gateway is registered; is a silo running?", ex),
                _ when Find(ex, e => e.GetType().Name == "ConnectionFailedException") is { } failed =>
                    CliException.Connection($"cannot connect to {where}: {Output.OneLine(failed.Message).TrimEnd('.')}; is a silo running? {TlsHint(tls)}", ex),
                _ => CliException.Connection($"cannot connect to {where}: {Output.OneLine(ex.GetBaseException().Message)}", ex),
            };
        }
    }

    public ValueTask DisposeAsync() => DisposeQuietlyAsync(_host);

    // A gateway that requires TLS just closes a connection it cannot authenticate: from here that looks like a
    // silo that is not there, so the message names the other cause too.
    private static string TlsHint(ClusterTls? tls) => tls is null
        ? $"If the cluster requires TLS, this client needs a certificate of the cluster's CA ({ClusterTls.CertificatePathKey}, {ClusterTls.CaPathKey})"
        : $"TLS is on: the silos may have refused this client's certificate {tls.Certificate.Subject} (is it issued by the CA the silos trust?)";

    private static async ValueTask DisposeQuietlyAsync(IHost host)
    {
        try
        {
            using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(3));
            await host.StopAsync(stop.Token).ConfigureAwait(false);
        }
        catch
        {
            // Leaving anyway; a client has nothing to hand over.
        }

        try
        {
            if (host is IAsyncDisposable asyncDisposable)
            {
                await asyncDisposable.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                host.Dispose();
            }
        }
        catch
        {
            // As above.
        }
    }

    private static Exception? FindDatabaseError(Exception ex)
    {
        for (Exception? current = ex; current is not null; current = current.InnerException)
        {
            if (current is NpgsqlException)
            {
                return current;
            }

            if (current is AggregateException aggregate && aggregate.InnerExceptions.Select(FindDatabaseError).FirstOrDefault(e => e is not null) is { } inner)
            {
                return inner;
            }
        }

        return null;
    }

    private static Exception? Find(Exception ex, Func<Exception, bool> match)
    {
        for (Exception? current = ex; current is not null; current = current.InnerException)
        {
            if (match(current))
            {
                return current;
            }
        }

        return null;
    }
}
