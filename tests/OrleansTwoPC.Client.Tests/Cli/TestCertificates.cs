using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// A throwaway certificate authority and certificates it issues, generated per test and written to a private
/// temporary folder that is deleted on dispose: PEM CA files, PKCS#12 bundles with a password, PEM cert/key pairs.
/// </summary>
public sealed class TestCertificates : IDisposable
{
    private static readonly Oid ServerAuth = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuth = new("1.3.6.1.5.5.7.3.2");

    private readonly List<X509Certificate2> _made = [];

    public TestCertificates()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("twopc-tls-").FullName;
    }

    public string Directory { get; }

    /// <summary>A self-signed CA certificate with its key.</summary>
    public X509Certificate2 CreateAuthority(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        _made.Add(certificate);
        return certificate;
    }

    /// <summary>A certificate for <paramref name="name"/> issued by <paramref name="authority"/>, for client and server authentication.</summary>
    public X509Certificate2 Issue(X509Certificate2 authority, string name, bool server = true, DateTimeOffset? notAfter = null)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(server ? new OidCollection { ServerAuth, ClientAuth } : new OidCollection { ClientAuth }, false));
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName(name);
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        var serial = RandomNumberGenerator.GetBytes(12);
        var notBefore = DateTimeOffset.UtcNow.AddMinutes(-5);
        using var issued = request.Create(authority, notBefore, notAfter ?? DateTimeOffset.UtcNow.AddHours(12), serial);
        var certificate = issued.CopyWithPrivateKey(key);
        _made.Add(certificate);
        return certificate;
    }

    /// <summary>Writes the public certificate(s) as one PEM file.</summary>
    public string WritePem(string fileName, params X509Certificate2[] certificates)
    {
        var path = Path.Combine(Directory, fileName);
        File.WriteAllText(path, string.Concat(certificates.Select(c => c.ExportCertificatePem() + "\n")));
        return path;
    }

    /// <summary>Writes a PKCS#12 bundle (certificate and key) protected by <paramref name="password"/>.</summary>
    public string WritePkcs12(string fileName, X509Certificate2 certificate, string password)
    {
        var path = Path.Combine(Directory, fileName);
        File.WriteAllBytes(path, certificate.Export(X509ContentType.Pkcs12, password));
        return path;
    }

    /// <summary>Writes the certificate and its private key as two PEM files.</summary>
    public (string Certificate, string Key) WritePemPair(string name, X509Certificate2 certificate)
    {
        var key = certificate.GetECDsaPrivateKey() ?? throw new InvalidOperationException("no EC private key");
        var certificatePath = WritePem(name + ".crt", certificate);
        var keyPath = Path.Combine(Directory, name + ".key");
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        return (certificatePath, keyPath);
    }

    public void Dispose()
    {
        foreach (var certificate in _made) certificate.Dispose();
        try
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
        catch (IOException)
        {
            // Best effort: the temp folder is cleaned by the system otherwise.
        }
    }
}
