using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>
/// <c>TwoPC:Postgres:SslMode</c> and <c>RootCertificate</c> against a throwaway PostgreSQL with <c>ssl=on</c> and a
/// certificate generated here: every connection the topology hands out is encrypted (pg_stat_ssl says so),
/// VerifyFull accepts the server only with the right CA, and a server without TLS is refused under Require.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class PostgresTlsTests(PostgresFixture plain)
{
    private static IConfiguration Config(params (string Key, string Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();

    [Fact]
    public async Task Require_and_VerifyFull_encrypt_every_connection_to_a_server_with_ssl_on()
    {
        var directory = Directory.CreateTempSubdirectory("twopc-pgtls-").FullName;
        try
        {
            var (caFile, otherCaFile) = WriteServerCertificates(directory);
            await GiveToPostgresAsync(directory);
            var options = new EmbeddedPostgresOptions();
            options.ServerSettings["ssl"] = "on";
            options.ServerSettings["ssl_cert_file"] = $"'{Path.Combine(directory, "server.crt")}'";
            options.ServerSettings["ssl_key_file"] = $"'{Path.Combine(directory, "server.key")}'";
            await using var server = await EmbeddedPostgres.StartNewAsync(options, NullLogger.Instance);

            // Require: every database the topology derives is reached over TLS.
            await using (var runtime = await PostgresTopology.StartAsync(Config(
                             ("ConnectionStrings:PostgresServer", server.AdminConnectionString), ("TwoPC:DatabasePrefix", "tls"),
                             (PostgresTls.SslModeKey, "Require")), NullLogger.Instance))
            {
                foreach (var (name, connectionString) in runtime.Databases.All)
                {
                    Assert.Equal(SslMode.Require, new NpgsqlConnectionStringBuilder(connectionString).SslMode);
                    var (ssl, version) = await SslOfOwnConnectionAsync(connectionString);
                    Assert.True(ssl, $"{name} not encrypted");
                    Assert.StartsWith("TLSv1.", version);
                }
            }

            // VerifyFull with the CA that issued the server's certificate (its names include 127.0.0.1): encrypted and authenticated.
            var verified = Config((PostgresTls.SslModeKey, "VerifyFull"), (PostgresTls.RootCertificateKey, caFile));
            var connection = PostgresTls.FromConfiguration(verified).Apply(server.ConnectionStringFor("tls_payments"));
            Assert.True((await SslOfOwnConnectionAsync(connection)).Ssl);

            // The same with another CA: the server is not who it claims, and nothing is sent to it.
            var impostor = PostgresTls.FromConfiguration(Config((PostgresTls.SslModeKey, "VerifyFull"), (PostgresTls.RootCertificateKey, otherCaFile)))
                .Apply(server.ConnectionStringFor("tls_payments") + ";Pooling=false");
            await Assert.ThrowsAnyAsync<Exception>(() => SslOfOwnConnectionAsync(impostor));

            // A connection string's own choice wins over the setting: here it turns TLS off, and the server shows it.
            var own = PostgresTls.FromConfiguration(Config((PostgresTls.SslModeKey, "Require"))).Apply(server.ConnectionStringFor("tls_payments") + ";SSL Mode=Disable");
            Assert.False((await SslOfOwnConnectionAsync(own)).Ssl);
        }
        finally
        {
            NpgsqlConnection.ClearAllPools();
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public async Task Require_refuses_a_server_without_TLS_and_bad_settings_are_one_clear_error()
    {
        var required = PostgresTls.FromConfiguration(Config((PostgresTls.SslModeKey, "require"))).Apply(plain.Databases.Payments + ";Pooling=false");
        var refused = await Assert.ThrowsAnyAsync<Exception>(() => SslOfOwnConnectionAsync(required));
        Assert.Contains("SSL", refused.GetBaseException().Message, StringComparison.OrdinalIgnoreCase);

        Assert.StartsWith("TwoPC:Postgres:SslMode must be one of Disable, Allow, Prefer, Require, VerifyCA, VerifyFull, not 'always'",
            Assert.Throws<PostgresSettingsException>(() => PostgresTls.FromConfiguration(Config((PostgresTls.SslModeKey, "always")))).Message);
        Assert.Equal("TwoPC:Postgres:RootCertificate: /nonexistent/ca.pem does not exist",
            Assert.Throws<PostgresSettingsException>(() => PostgresTls.FromConfiguration(Config((PostgresTls.SslModeKey, "VerifyFull"), (PostgresTls.RootCertificateKey, "/nonexistent/ca.pem")))).Message);
        var caFile = Path.GetTempFileName();
        try
        {
            Assert.StartsWith("TwoPC:Postgres:RootCertificate is only used to verify the server",
                Assert.Throws<PostgresSettingsException>(() => PostgresTls.FromConfiguration(Config((PostgresTls.SslModeKey, "Require"), (PostgresTls.RootCertificateKey, caFile)))).Message);
        }
        finally
        {
            File.Delete(caFile);
        }

        // Nothing configured: connection strings are left exactly as they are.
        Assert.Equal(plain.Databases.Payments, PostgresTls.FromConfiguration(Config()).Apply(plain.Databases.Payments));
    }

    /// <summary>As root the server runs as user postgres (see EmbeddedPostgres), which must own its key file.</summary>
    private static async Task GiveToPostgresAsync(string directory)
    {
        if (Environment.UserName != "root") return;
        using var chown = System.Diagnostics.Process.Start("chown", ["-R", "postgres:", directory])!;
        await chown.WaitForExitAsync();
        Assert.Equal(0, chown.ExitCode);
    }

    private static async Task<(bool Ssl, string? Version)> SslOfOwnConnectionAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()", connection);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        return (reader.GetBoolean(0), reader.IsDBNull(1) ? null : reader.GetString(1));
    }

    /// <summary>A CA, a server certificate it issues for 127.0.0.1 (PEM, key readable by its owner only), and an unrelated CA.</summary>
    private static (string CaFile, string OtherCaFile) WriteServerCertificates(string directory)
    {
        using var caKey = RSA.Create(2048);
        var caRequest = new CertificateRequest("CN=twopc-test-postgres-ca", caKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        // One reading of the clock: a leaf may not outlive its issuer, not even by the milliseconds between two readings.
        var now = DateTimeOffset.UtcNow;
        using var ca = caRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1));

        using var serverKey = RSA.Create(2048);
        var request = new CertificateRequest("CN=127.0.0.1", serverKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension(new OidCollection { new("1.3.6.1.5.5.7.3.1") }, false));
        using var serverCertificate = request.Create(ca, now.AddMinutes(-5), now.AddHours(12), RandomNumberGenerator.GetBytes(12));
        File.WriteAllText(Path.Combine(directory, "server.crt"), serverCertificate.ExportCertificatePem());
        var keyFile = Path.Combine(directory, "server.key");
        File.WriteAllText(keyFile, serverKey.ExportPkcs8PrivateKeyPem());
        // PostgreSQL refuses a key that others can read.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(keyFile, UnixFileMode.UserRead | UnixFileMode.UserWrite);

        var caFile = Path.Combine(directory, "ca.pem");
        File.WriteAllText(caFile, ca.ExportCertificatePem());
        using var otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var other = new CertificateRequest("CN=someone-else", otherKey, HashAlgorithmName.SHA256).CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        var otherCaFile = Path.Combine(directory, "other-ca.pem");
        File.WriteAllText(otherCaFile, other.ExportCertificatePem());
        return (caFile, otherCaFile);
    }
}
