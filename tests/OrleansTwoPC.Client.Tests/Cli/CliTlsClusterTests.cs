using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// Mutual TLS end to end: two real silo processes of different service roles (so orders cross silo-to-silo
/// connections) with certificates issued by a CA generated here, and the real tpc: with a certificate of that
/// CA it places an order; without one, or with one of another CA, it is refused with one clear line; a silo
/// with a wrong certificate password does not start.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class CliTlsClusterTests(PostgresFixture postgres, ITestOutputHelper log)
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task A_tls_cluster_serves_a_client_with_a_certificate_of_its_CA_and_refuses_others()
    {
        using var certificates = new TestCertificates();
        var authority = certificates.CreateAuthority("twopc-test-cluster-ca");
        var caFile = certificates.WritePem("ca.pem", authority);
        const string password = "pfx-secret-42";
        var ordersPfx = certificates.WritePkcs12("orders.pfx", certificates.Issue(authority, "silo-orders"), password);
        var (paymentsCrt, paymentsKey) = certificates.WritePemPair("silo-payments", certificates.Issue(authority, "silo-payments"));
        var (clientCrt, clientKey) = certificates.WritePemPair("client", certificates.Issue(authority, "operator", server: false));
        var rogue = certificates.CreateAuthority("rogue-ca");
        var rogueCa = certificates.WritePem("rogue-ca.pem", rogue);
        var (rogueCrt, rogueKey) = certificates.WritePemPair("rogue-client", certificates.Issue(rogue, "intruder", server: false));

        await using var orders = await SiloServer.StartAsync(postgres.AdminConnectionString, "tlsorders", StartTimeout, new Dictionary<string, string>
        {
            ["TwoPC:Roles"] = "coordinator,inventory,shipping",
            ["TwoPC:Tls:CertificatePath"] = ordersPfx,
            ["TwoPC:Tls:Password"] = password,
            ["TwoPC:Tls:CaPath"] = caFile,
        });
        await using var payments = await SiloServer.StartAsync(postgres.AdminConnectionString, "tlspay", StartTimeout, new Dictionary<string, string>
        {
            ["TwoPC:Roles"] = "payment",
            ["TwoPC:Tls:CertificatePath"] = paymentsCrt,
            ["TwoPC:Tls:KeyPath"] = paymentsKey,
            ["TwoPC:Tls:CaPath"] = caFile,
        }, joining: orders);
        string[] withCertificate = [.. orders.TpcSettings, $"--TwoPC:Tls:CertificatePath={clientCrt}", $"--TwoPC:Tls:KeyPath={clientKey}", $"--TwoPC:Tls:CaPath={caFile}"];
        try
        {
            // Trusted client: seed and an order that needs both silos (payment on the other one) commits.
            var unique = Guid.NewGuid().ToString("N")[..8];
            var sku = $"sku-{unique}";
            var account = $"acct-{unique}";
            var seed = await Tpc.RunAsync(["seed", "--sku", $"{sku}=5", "--account", $"{account}=1000", .. withCertificate]);
            log.WriteLine(seed.ToString());
            Assert.True(seed.ExitCode == 0, seed.ToString());
            var order = await Tpc.RunAsync(["order", "--id", $"o-{unique}", "--account", account, "--address", "1 Main St", "--line", $"{sku}:2:100", .. withCertificate]);
            log.WriteLine(order.ToString());
            Assert.True(order.ExitCode == 0, order + Diagnostics(orders, payments));
            Assert.Contains("Committed", order.Out);
            var balance = await Tpc.RunAsync(["balance", account, .. withCertificate]);
            Assert.True(balance.ExitCode == 0, balance.ToString());
            Assert.Contains("800", balance.Out);

            // No certificate: the gateway refuses the connection; one line, exit 2.
            var plain = await Tpc.RunAsync(["stock", sku, .. orders.TpcSettings]);
            log.WriteLine(plain.ToString());
            Assert.Equal(2, plain.ExitCode);
            Assert.Single(plain.ErrorLines);
            Assert.Contains("If the cluster requires TLS, this client needs a certificate", plain.Error);

            // A certificate its own CA file does not vouch for: refused before any connection, one usage line.
            var misconfigured = await Tpc.RunAsync(["stock", sku, .. orders.TpcSettings, $"--TwoPC:Tls:CertificatePath={rogueCrt}", $"--TwoPC:Tls:KeyPath={rogueKey}", $"--TwoPC:Tls:CaPath={caFile}"]);
            log.WriteLine(misconfigured.ToString());
            Assert.Equal(2, misconfigured.ExitCode);
            Assert.Single(misconfigured.ErrorLines);
            Assert.Contains("own certificate CN=intruder is not accepted by TwoPC:Tls:CaPath", misconfigured.Error);

            // A certificate of another CA (which this client trusts as well as the cluster's): the silo refuses it,
            // and says why in its log.
            var bothCas = certificates.WritePem("both-ca.pem", authority, rogue);
            var intruder = await Tpc.RunAsync(["stock", sku, .. orders.TpcSettings, $"--TwoPC:Tls:CertificatePath={rogueCrt}", $"--TwoPC:Tls:KeyPath={rogueKey}", $"--TwoPC:Tls:CaPath={bothCas}"]);
            log.WriteLine(intruder.ToString());
            Assert.Equal(2, intruder.ExitCode);
            Assert.Single(intruder.ErrorLines);
            Assert.Contains("the silos may have refused this client's certificate CN=intruder", intruder.Error);
            await WaitForAsync(() => orders.Output.Contains("TLS: refused a connection: CN=intruder is not issued by a CA in TwoPC:Tls:CaPath"), TimeSpan.FromSeconds(10));

            // A client that trusts another CA refuses the silos' certificates itself.
            var distrusting = await Tpc.RunAsync(["stock", sku, .. orders.TpcSettings, $"--TwoPC:Tls:CertificatePath={rogueCrt}", $"--TwoPC:Tls:KeyPath={rogueKey}", $"--TwoPC:Tls:CaPath={rogueCa}"]);
            log.WriteLine(distrusting.ToString());
            Assert.Equal(2, distrusting.ExitCode);
            Assert.Single(distrusting.ErrorLines);
            Assert.Contains("the gateway's certificate is not trusted: CN=silo-", distrusting.Error);

            // And the trusted client still works after all that.
            var again = await Tpc.RunAsync(["stock", sku, .. withCertificate]);
            Assert.True(again.ExitCode == 0, again.ToString());
            Assert.Contains(sku, again.Out);
        }
        catch
        {
            log.WriteLine(Diagnostics(orders, payments));
            throw;
        }
    }

    [Fact]
    public async Task A_silo_with_a_wrong_certificate_password_exits_with_one_clear_line()
    {
        using var certificates = new TestCertificates();
        var authority = certificates.CreateAuthority("twopc-test-cluster-ca");
        var caFile = certificates.WritePem("ca.pem", authority);
        var pfx = certificates.WritePkcs12("silo.pfx", certificates.Issue(authority, "silo"), "right-password");
        var prefix = $"t_{Guid.NewGuid():N}"[..14];
        var clusterId = $"tls-{prefix}";
        await using var silo = ChildSilo.Start("badpassword", postgres.AdminConnectionString, prefix, clusterId, "OrleansTwoPC",
            PostgresTopology.DeriveDatabases(postgres.AdminConnectionString, prefix).Coordinator,
            new Dictionary<string, string>
            {
                ["TwoPC:Tls:CertificatePath"] = pfx,
                ["TwoPC:Tls:Password"] = "wrong-password",
                ["TwoPC:Tls:CaPath"] = caFile,
            });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await silo.WaitForExitAsync(timeout.Token);
        var output = silo.LastLines(50);
        log.WriteLine(string.Join(Environment.NewLine, output));
        Assert.NotEqual(0, silo.ExitCode);
        var error = Assert.Single(output, l => l.Contains("error:", StringComparison.Ordinal));
        Assert.Contains("TwoPC:Tls:CertificatePath: cannot read the PKCS#12 file", error);
        Assert.DoesNotContain(output, l => l.Contains("   at ", StringComparison.Ordinal));
    }

    private static string Diagnostics(SiloServer orders, SiloServer payments) =>
        $"{Environment.NewLine}--- orders silo{Environment.NewLine}{orders.Output}{Environment.NewLine}--- payments silo{Environment.NewLine}{payments.Output}";

    private static async Task WaitForAsync(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"condition not reached within {timeout.TotalSeconds:0} s");
            await Task.Delay(200);
        }
    }
}
