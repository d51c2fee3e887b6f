using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Orleans.Connections.Security;
using OrleansTwoPC.Abstractions.Security;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// Mutual TLS on the silo's listeners (silo and gateway) and on its outgoing silo connections, when
/// <c>TwoPC:Tls:CertificatePath</c> is set (see <see cref="ClusterTls"/>): every peer, silo or client, must
/// present a certificate issued by the configured CA, and the silo presents its own.
/// </summary>
public static class SiloTls
{
    /// <summary>The silo's TLS settings, or null when TLS is off; a bad setting is a <see cref="SiloStartupException"/>.</summary>
    public static ClusterTls? Load(IConfiguration configuration)
    {
        try
        {
            return ClusterTls.FromConfiguration(configuration, server: true);
        }
        catch (ClusterTlsException ex)
        {
            throw new SiloStartupException(ex.Message);
        }
    }

    public static ISiloBuilder UseClusterTls(this ISiloBuilder silo, ClusterTls tls, ILogger logger) =>
        silo.UseTls(tls.Certificate, options =>
        {
            // Required both ways: a silo demands a certificate from whoever connects, and sends its own when it connects.
            options.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
            options.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
            options.RemoteCertificateValidation = (certificate, chain, _) =>
            {
                if (tls.ValidatePeer(certificate, chain, out var reason)) return true;
                logger.LogWarning("TLS: refused a connection: {Reason}", reason);
                return false;
            };
        });
}
