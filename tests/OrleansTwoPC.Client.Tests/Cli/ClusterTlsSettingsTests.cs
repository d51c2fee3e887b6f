using Microsoft.Extensions.Configuration;
using OrleansTwoPC.Abstractions.Security;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// <c>TwoPC:Tls</c> settings: every unusable combination is one <see cref="ClusterTlsException"/> naming the
/// setting, found before anything connects; a usable one accepts peers by CA and, optionally, fingerprint.
/// </summary>
public sealed class ClusterTlsSettingsTests : IDisposable
{
    private readonly TestCertificates _certificates = new();

    public void Dispose() => _certificates.Dispose();

    private static IConfiguration Settings(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();

    private static string Refused(IConfiguration configuration, bool server = true) =>
        Assert.Throws<ClusterTlsException>(() => ClusterTls.FromConfiguration(configuration, server)).Message;

    [Fact]
    public void Without_a_certificate_path_TLS_is_off_and_a_stray_TLS_key_is_refused()
    {
        Assert.Null(ClusterTls.FromConfiguration(Settings(), server: true));
        Assert.Equal("TwoPC:Tls:CaPath is set but TwoPC:Tls:CertificatePath is not: TLS needs this process's certificate",
            Refused(Settings((ClusterTls.CaPathKey, "/etc/ca.pem"))));
    }

    [Fact]
    public void Missing_files_a_wrong_password_and_a_missing_key_each_name_the_setting()
    {
        var ca = _certificates.CreateAuthority("ca");
        var caFile = _certificates.WritePem("ca.pem", ca);
        var silo = _certificates.Issue(ca, "silo");
        var pfx = _certificates.WritePkcs12("silo.pfx", silo, "right");
        var missing = Path.Combine(_certificates.Directory, "nowhere.pfx");

        Assert.Equal($"TwoPC:Tls:CertificatePath: {missing} does not exist",
            Refused(Settings((ClusterTls.CertificatePathKey, missing), (ClusterTls.CaPathKey, caFile))));
        Assert.StartsWith("TwoPC:Tls:CaPath is required",
            Refused(Settings((ClusterTls.CertificatePathKey, pfx), (ClusterTls.PasswordKey, "right"))));
        Assert.StartsWith($"TwoPC:Tls:CertificatePath: cannot read the PKCS#12 file {pfx}",
            Refused(Settings((ClusterTls.CertificatePathKey, pfx), (ClusterTls.PasswordKey, "wrong"), (ClusterTls.CaPathKey, caFile))));
        var publicOnly = _certificates.WritePem("public.crt", silo);
        Assert.StartsWith($"TwoPC:Tls:CertificatePath: cannot read the PEM certificate {publicOnly}",
            Refused(Settings((ClusterTls.CertificatePathKey, publicOnly), (ClusterTls.CaPathKey, caFile))));
        Assert.StartsWith($"TwoPC:Tls:CaPath: {pfx}",
            Refused(Settings((ClusterTls.CertificatePathKey, pfx), (ClusterTls.PasswordKey, "right"), (ClusterTls.CaPathKey, pfx))));

        // The password from a mounted file (its trailing newline is not part of it).
        var passwordFile = Path.Combine(_certificates.Directory, "password");
        File.WriteAllText(passwordFile, "right\n");
        var tls = ClusterTls.FromConfiguration(Settings((ClusterTls.CertificatePathKey, pfx), (ClusterTls.PasswordFileKey, passwordFile), (ClusterTls.CaPathKey, caFile)), server: true);
        Assert.NotNull(tls);
        Assert.Equal(silo.Thumbprint, tls.Certificate.Thumbprint);
        Assert.StartsWith("TwoPC:Tls:Password and TwoPC:Tls:PasswordFile are both set",
            Refused(Settings((ClusterTls.CertificatePathKey, pfx), (ClusterTls.PasswordKey, "right"), (ClusterTls.PasswordFileKey, passwordFile), (ClusterTls.CaPathKey, caFile))));
    }

    [Fact]
    public void An_expired_certificate_a_client_only_certificate_on_a_silo_and_a_foreign_one_are_refused()
    {
        var ca = _certificates.CreateAuthority("ca");
        var caFile = _certificates.WritePem("ca.pem", ca);

        var expired = _certificates.Issue(ca, "old", notAfter: DateTimeOffset.UtcNow.AddMinutes(-1));
        var (expiredCrt, expiredKey) = _certificates.WritePemPair("old", expired);
        Assert.StartsWith("TwoPC:Tls:CertificatePath: the certificate CN=old expired on",
            Refused(Settings((ClusterTls.CertificatePathKey, expiredCrt), (ClusterTls.KeyPathKey, expiredKey), (ClusterTls.CaPathKey, caFile))));

        var (clientCrt, clientKey) = _certificates.WritePemPair("client", _certificates.Issue(ca, "client", server: false));
        var clientOnly = Settings((ClusterTls.CertificatePathKey, clientCrt), (ClusterTls.KeyPathKey, clientKey), (ClusterTls.CaPathKey, caFile));
        Assert.Equal("TwoPC:Tls:CertificatePath: the certificate CN=client does not allow server authentication (extended key usage 1.3.6.1.5.5.7.3.1)",
            Refused(clientOnly, server: true));
        Assert.NotNull(ClusterTls.FromConfiguration(clientOnly, server: false));

        var other = _certificates.CreateAuthority("other");
        var (foreignCrt, foreignKey) = _certificates.WritePemPair("foreign", _certificates.Issue(other, "foreign"));
        Assert.Contains("own certificate CN=foreign is not accepted by TwoPC:Tls:CaPath",
            Refused(Settings((ClusterTls.CertificatePathKey, foreignCrt), (ClusterTls.KeyPathKey, foreignKey), (ClusterTls.CaPathKey, caFile))));
    }

    [Fact]
    public void Peers_are_accepted_by_the_configured_CA_alone_and_by_fingerprint_when_pinned()
    {
        var ca = _certificates.CreateAuthority("ca");
        var caFile = _certificates.WritePem("ca.pem", ca);
        var (crt, key) = _certificates.WritePemPair("silo", _certificates.Issue(ca, "silo"));
        var peer = _certificates.Issue(ca, "peer");
        var otherPeer = _certificates.Issue(ca, "other-peer");
        var stranger = _certificates.Issue(_certificates.CreateAuthority("stranger-ca"), "stranger");

        var byCa = ClusterTls.FromConfiguration(Settings((ClusterTls.CertificatePathKey, crt), (ClusterTls.KeyPathKey, key), (ClusterTls.CaPathKey, caFile)), server: true)!;
        Assert.True(byCa.ValidatePeer(peer, null, out _));
        Assert.True(byCa.ValidatePeer(otherPeer, null, out _));
        Assert.False(byCa.ValidatePeer(stranger, null, out var why));
        Assert.StartsWith("CN=stranger is not issued by a CA in TwoPC:Tls:CaPath", why);

        var pinned = ClusterTls.FromConfiguration(Settings((ClusterTls.CertificatePathKey, crt), (ClusterTls.KeyPathKey, key), (ClusterTls.CaPathKey, caFile),
            (ClusterTls.AllowedPeersKey, string.Join(',', ClusterTls.FingerprintOf(peer), Colons(ClusterTls.FingerprintOf(stranger))))), server: true)!;
        Assert.True(pinned.ValidatePeer(peer, null, out _));
        Assert.False(pinned.ValidatePeer(otherPeer, null, out why));
        Assert.Equal($"SHA-256 {ClusterTls.FingerprintOf(otherPeer)} is not in TwoPC:Tls:AllowedPeers", why);
        // Pinned but of another CA: both conditions hold, not either.
        Assert.False(pinned.ValidatePeer(stranger, null, out _));

        Assert.StartsWith("TwoPC:Tls:AllowedPeers: 'abc' is not a SHA-256 fingerprint",
            Refused(Settings((ClusterTls.CertificatePathKey, crt), (ClusterTls.KeyPathKey, key), (ClusterTls.CaPathKey, caFile), (ClusterTls.AllowedPeersKey, "abc"))));
    }

    [Fact]
    public void A_PEM_certificate_with_openssl_bag_attributes_before_it_is_read_as_PEM()
    {
        var ca = _certificates.CreateAuthority("ca");
        var caFile = _certificates.WritePem("ca.pem", ca);
        var silo = _certificates.Issue(ca, "silo");
        var (crt, key) = _certificates.WritePemPair("silo", silo);
        File.WriteAllText(crt, "Bag Attributes\n    localKeyID: 01 00 00 00\nsubject=/CN=silo\n" + File.ReadAllText(crt));
        var tls = ClusterTls.FromConfiguration(Settings((ClusterTls.CertificatePathKey, crt), (ClusterTls.KeyPathKey, key), (ClusterTls.CaPathKey, caFile)), server: true);
        Assert.Equal(silo.Thumbprint, tls!.Certificate.Thumbprint);
        Assert.True(tls.Certificate.HasPrivateKey);
    }

    private static string Colons(string hex) => string.Join(':', hex.Chunk(2).Select(c => new string(c)));
}
