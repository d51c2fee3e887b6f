using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Configuration;

namespace OrleansTwoPC.Abstractions.Security;

/// <summary>A TLS setting that cannot be used: one line naming the setting and what is wrong.</summary>
public sealed class ClusterTlsException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// This process's identity and trust for the cluster's own connections (silo to silo, client to gateway),
/// read from <c>TwoPC:Tls</c>. TLS is on when <c>TwoPC:Tls:CertificatePath</c> is set, and then it is mutual:
/// both ends present a certificate, and a peer is accepted only if its certificate chains to one of the CA
/// certificates in <c>TwoPC:Tls:CaPath</c> (those alone: the machine's trusted roots play no part) and, when
/// <c>TwoPC:Tls:AllowedPeers</c> lists SHA-256 fingerprints, is one of them. Host names are not checked:
/// silos dial each other by IP address, so the cluster's CA is what names a member; give the cluster a CA of
/// its own. Every problem with the files is found here, at start-up, as one <see cref="ClusterTlsException"/>.
/// </summary>
public sealed class ClusterTls
{
    public const string Section = "TwoPC:Tls";
    public const string CertificatePathKey = Section + ":CertificatePath";
    public const string KeyPathKey = Section + ":KeyPath";
    public const string PasswordKey = Section + ":Password";
    public const string PasswordFileKey = Section + ":PasswordFile";
    public const string CaPathKey = Section + ":CaPath";
    public const string AllowedPeersKey = Section + ":AllowedPeers";

    private static readonly string[] DependentKeys = [KeyPathKey, PasswordKey, PasswordFileKey, CaPathKey, AllowedPeersKey];
    private const string ServerAuthentication = "1.3.6.1.5.5.7.3.1";
    private const string ClientAuthentication = "1.3.6.1.5.5.7.3.2";

    private ClusterTls(X509Certificate2 certificate, X509Certificate2Collection authorities, IReadOnlySet<string> allowedPeers)
    {
        Certificate = certificate;
        Authorities = authorities;
        AllowedPeers = allowedPeers;
    }

    /// <summary>This process's certificate, with its private key.</summary>
    public X509Certificate2 Certificate { get; }

    /// <summary>The CA certificates a peer's certificate must chain to.</summary>
    public X509Certificate2Collection Authorities { get; }

    /// <summary>SHA-256 fingerprints (upper-case hex) a peer must have; empty: any certificate of the CA.</summary>
    public IReadOnlySet<string> AllowedPeers { get; }

    /// <summary>The SHA-256 fingerprint of this process's certificate, as <c>AllowedPeers</c> lists it.</summary>
    public string Fingerprint => FingerprintOf(Certificate);

    /// <summary>For logs: whose certificate this is and until when.</summary>
    public string Describe() => $"{Certificate.Subject} (SHA-256 {Fingerprint}, valid until {Certificate.NotAfter.ToUniversalTime():yyyy-MM-dd})";

    /// <summary>
    /// The TLS settings, or null when <c>TwoPC:Tls:CertificatePath</c> is not set (and no other TLS key is:
    /// a CA without a certificate is a half-done configuration, refused rather than run in the clear).
    /// </summary>
    /// <param name="server">True for a silo: its certificate must also allow server authentication.</param>
    public static ClusterTls? FromConfiguration(IConfiguration configuration, bool server, DateTimeOffset? now = null)
    {
        var certificatePath = NonBlank(configuration[CertificatePathKey]);
        if (certificatePath is null)
        {
            var stray = DependentKeys.FirstOrDefault(k => NonBlank(configuration[k]) is not null);
            return stray is null ? null : throw new ClusterTlsException($"{stray} is set but {CertificatePathKey} is not: TLS needs this process's certificate");
        }

        var caPath = NonBlank(configuration[CaPathKey])
                     ?? throw new ClusterTlsException($"{CaPathKey} is required with {CertificatePathKey}: the CA certificate(s) that peers' certificates must be issued by");
        var password = ReadPassword(configuration);
        var certificate = LoadCertificate(certificatePath, NonBlank(configuration[KeyPathKey]), password);
        var authorities = LoadAuthorities(caPath);
        var allowed = ParseFingerprints(configuration[AllowedPeersKey]);
        var tls = new ClusterTls(certificate, authorities, allowed);

        var at = (now ?? DateTimeOffset.UtcNow).UtcDateTime;
        if (certificate.NotAfter.ToUniversalTime() < at)
            throw new ClusterTlsException($"{CertificatePathKey}: the certificate {certificate.Subject} expired on {certificate.NotAfter.ToUniversalTime():u}");
        if (certificate.NotBefore.ToUniversalTime() > at)
            throw new ClusterTlsException($"{CertificatePathKey}: the certificate {certificate.Subject} is not valid before {certificate.NotBefore.ToUniversalTime():u}");
        RequireUsage(certificate, ClientAuthentication, "client authentication");
        if (server) RequireUsage(certificate, ServerAuthentication, "server authentication");
        // Peers check us exactly as we check them: a certificate our own CA does not vouch for would be refused by all.
        if (!tls.ChainsToAuthority(certificate, null, out var why))
            throw new ClusterTlsException($"{CertificatePathKey}: this process's own certificate {certificate.Subject} is not accepted by {CaPathKey} ({why}); peers would refuse it");
        return tls;
    }

    /// <summary>
    /// Whether a peer's certificate is acceptable (see the class summary); <paramref name="reason"/> says why not.
    /// The platform's own verdict (<see cref="SslPolicyErrors"/>) is ignored: it judges by the machine's roots and the host name.
    /// </summary>
    public bool ValidatePeer(X509Certificate2 certificate, X509Chain? presented, out string reason)
    {
        if (!ChainsToAuthority(certificate, presented, out reason)) return false;
        if (AllowedPeers.Count > 0 && !AllowedPeers.Contains(FingerprintOf(certificate)))
        {
            reason = $"SHA-256 {FingerprintOf(certificate)} is not in {AllowedPeersKey}";
            return false;
        }

        reason = "";
        return true;
    }

    public static string FingerprintOf(X509Certificate2 certificate) => certificate.GetCertHashString(HashAlgorithmName.SHA256);

    private bool ChainsToAuthority(X509Certificate2 certificate, X509Chain? presented, out string reason)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(Authorities);
        // An offline cluster CA publishes no revocation lists; replace a compromised certificate by re-issuing the CA.
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (presented is not null)
            foreach (var element in presented.ChainElements)
                if (!element.Certificate.Equals(certificate)) chain.ChainPolicy.ExtraStore.Add(element.Certificate);
        if (chain.Build(certificate))
        {
            reason = "";
            return true;
        }

        var status = chain.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0).Distinct().ToList();
        reason = $"{certificate.Subject} is not issued by a CA in {CaPathKey}" + (status.Count == 0 ? "" : $": {string.Join("; ", status)}");
        return false;
    }

    private static string? ReadPassword(IConfiguration configuration)
    {
        var password = configuration[PasswordKey];
        var file = NonBlank(configuration[PasswordFileKey]);
        if (file is null) return string.IsNullOrEmpty(password) ? null : password;
        if (!string.IsNullOrEmpty(password)) throw new ClusterTlsException($"{PasswordKey} and {PasswordFileKey} are both set; give one");
        try
        {
            // A mounted secret usually ends with a newline that is not part of the password.
            return File.ReadAllText(file).TrimEnd('\r', '\n');
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ClusterTlsException($"{PasswordFileKey}: cannot read {file}: {ex.Message}", ex);
        }
    }

    private static X509Certificate2 LoadCertificate(string path, string? keyPath, string? password)
    {
        RequireFile(path, CertificatePathKey);
        if (keyPath is not null) RequireFile(keyPath, KeyPathKey);
        X509Certificate2 certificate;
        try
        {
            if (IsPem(path))
            {
                certificate = password is null
                    ? X509Certificate2.CreateFromPemFile(path, keyPath ?? path)
                    : X509Certificate2.CreateFromEncryptedPemFile(path, password, keyPath ?? path);
            }
            else
            {
                if (keyPath is not null) throw new ClusterTlsException($"{KeyPathKey} is only for a PEM certificate; {path} is PKCS#12, which holds its own key");
                certificate = X509CertificateLoader.LoadPkcs12FromFile(path, password);
            }
        }
        catch (CryptographicException ex)
        {
            var what = IsPem(path)
                ? $"cannot read the PEM certificate {path} with the key {keyPath ?? path} (a private key is required; with an encrypted key, is {PasswordKey} right?)"
                : $"cannot read the PKCS#12 file {path} (is {PasswordKey} or {PasswordFileKey} right?)";
            throw new ClusterTlsException($"{CertificatePathKey}: {what}: {ex.Message.Trim()}", ex);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ClusterTlsException($"{CertificatePathKey}: cannot read {path}: {ex.Message}", ex);
        }

        if (!certificate.HasPrivateKey)
            throw new ClusterTlsException($"{CertificatePathKey}: {path} holds no private key for {certificate.Subject}");
        return certificate;
    }

    private static X509Certificate2Collection LoadAuthorities(string path)
    {
        RequireFile(path, CaPathKey);
        var authorities = new X509Certificate2Collection();
        try
        {
            authorities.ImportFromPemFile(path);
        }
        catch (CryptographicException ex)
        {
            throw new ClusterTlsException($"{CaPathKey}: {path} is not a PEM file of certificates: {ex.Message.Trim()}", ex);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ClusterTlsException($"{CaPathKey}: cannot read {path}: {ex.Message}", ex);
        }

        return authorities.Count > 0 ? authorities : throw new ClusterTlsException($"{CaPathKey}: {path} contains no PEM certificate");
    }

    private static IReadOnlySet<string> ParseFingerprints(string? text)
    {
        var result = new HashSet<string>(StringComparer.Ordinal);
        foreach (var item in (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var hex = item.Replace(":", "", StringComparison.Ordinal).ToUpperInvariant();
            if (hex.Length != 64 || !hex.All(Uri.IsHexDigit))
                throw new ClusterTlsException($"{AllowedPeersKey}: '{item}' is not a SHA-256 fingerprint (64 hex digits, colons allowed)");
            result.Add(hex);
        }

        return result;
    }

    private static void RequireUsage(X509Certificate2 certificate, string oid, string name)
    {
        var usages = certificate.Extensions.OfType<X509EnhancedKeyUsageExtension>().FirstOrDefault()?.EnhancedKeyUsages;
        if (usages is not null && !usages.Cast<Oid>().Any(u => u.Value == oid))
            throw new ClusterTlsException($"{CertificatePathKey}: the certificate {certificate.Subject} does not allow {name} (extended key usage {oid})");
    }

    private static void RequireFile(string path, string key)
    {
        if (!File.Exists(path)) throw new ClusterTlsException($"{key}: {path} does not exist");
    }

    /// <summary>PEM if a PEM boundary appears near the start (openssl may put "Bag Attributes" lines before it); else PKCS#12 (DER).</summary>
    private static bool IsPem(string path)
    {
        using var stream = File.OpenRead(path);
        var start = new byte[4096];
        var read = stream.ReadAtLeast(start, start.Length, throwOnEndOfStream: false);
        return start.AsSpan(0, read).IndexOf("-----BEGIN "u8) >= 0;
    }

    private static string? NonBlank(string? value) => string.IsNullOrWhiteSpace(value) ? null : value.Trim();
}
