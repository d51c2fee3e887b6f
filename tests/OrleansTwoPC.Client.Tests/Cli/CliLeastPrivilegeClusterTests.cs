using System.Text.Json;
using Npgsql;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// Least privilege per service with real PostgreSQL logins (created by the product's provisioning step): a
/// coordinator silo, an inventory-and-shipping silo and a payment silo, each holding only its own services'
/// logins (no admin connection), and tpc with the read-only client login. Orders commit across them; the
/// payment login cannot read inventory; a payment participant left in doubt by a SIGKILLed coordinator silo
/// is listed by the payment silo from its own database and settled when a coordinator silo returns; the
/// operator's check (all credentials) finds everything consistent.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class CliLeastPrivilegeClusterTests(PostgresFixture postgres, ITestOutputHelper log)
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(90);

    [Fact]
    public async Task Role_silos_with_their_own_logins_only_commit_orders_and_recover_their_in_doubt_participants()
    {
        var unique = Guid.NewGuid().ToString("N")[..10];
        var prefix = $"lp_{unique}";
        var clusterId = $"least-{unique}";
        var admin = postgres.AdminConnectionString;
        var logins = ServiceLogins.Services.Select(s => s.Service).Append(ServiceLogins.Client)
            .Select(s => new ServiceLogin(s, $"{prefix}_{s}", Guid.NewGuid().ToString("N"))).ToList();
        var databases = await ServiceLogins.ProvisionAsync(admin, prefix, logins);
        string As(string service, string database) =>
            ServiceLogins.ConnectionString(admin, PostgresConnectionStrings.DatabaseOf(databases[database]), logins.Single(l => l.Service == service), withPassword: true);

        var silos = new List<ChildSilo>();
        ChildSilo Start(string name, string roles, params (string Key, string Value)[] connectionStrings)
        {
            var settings = new Dictionary<string, string>
            {
                // No admin connection: only the logins below.
                ["ConnectionStrings:PostgresServer"] = "",
                [PostgresTopology.ProvisionKey] = "false",
                ["TwoPC:Roles"] = roles,
                // Long enough that the coordinator is killed while it still waits for a vote.
                ["TwoPC:Protocol:PrepareTimeout"] = "00:00:20",
                ["TwoPC:Protocol:DecisionRetention"] = "00:01:00",
            };
            foreach (var (key, value) in connectionStrings) settings[key] = value;
            var silo = ChildSilo.Start(name, admin, prefix, clusterId, "OrleansTwoPC", databases.Coordinator, settings);
            silos.Add(silo);
            return silo;
        }

        ChildSilo StartCoordinator(string name) => Start(name, "coordinator", ("ConnectionStrings:Coordinator", As("coordinator", "Coordinator")));
        string[] client = [$"--ConnectionStrings:Coordinator={As(ServiceLogins.Client, "Coordinator")}", $"--TwoPC:ClusterId={clusterId}"];
        string[] operatorSettings = [$"--ConnectionStrings:PostgresServer={admin}", $"--TwoPC:DatabasePrefix={prefix}"];
        try
        {
            var coordinator = StartCoordinator("lp-coordinator");
            var services = Start("lp-services", "inventory,shipping",
                ("ConnectionStrings:Inventory", As("inventory", "Inventory")), ("ConnectionStrings:Shipping", As("shipping", "Shipping")),
                ("ConnectionStrings:Coordinator", As("inventory", "Coordinator")));
            var payments = Start("lp-payments", "payment",
                ("ConnectionStrings:Payments", As("payment", "Payments")), ("ConnectionStrings:Coordinator", As("payment", "Coordinator")));
            foreach (var silo in silos) await silo.WaitActiveAsync(StartTimeout, CancellationToken.None);

            // 1. An order across the three role silos commits.
            var sku = $"sku-{unique}";
            var account = $"acct-{unique}";
            await Expect(0, ["seed", "--sku", $"{sku}=10", "--account", $"{account}=1000", .. client]);
            var committed = await Expect(0, ["order", "--id", $"o1-{unique}", "--account", account, "--address", "1 Main St", "--line", $"{sku}:1:100", .. client]);
            Assert.Contains("Committed", committed.Out);

            // 2. The payment login cannot read inventory.
            await using (var sneak = new NpgsqlConnection(As("payment", "Inventory")))
            {
                var denied = await Assert.ThrowsAsync<PostgresException>(() => sneak.OpenAsync());
                Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, denied.SqlState);
                log.WriteLine($"payment login on the inventory database: {denied.MessageText}");
            }

            // 3. Inventory's writes hang (a table lock), so an order waits in its prepare phase with the payment
            //    already prepared; the coordinator silo is SIGKILLed then: the payment participant is in doubt.
            var reader = new StoredStateReader(PostgresTopology.DeriveDatabases(admin, prefix));
            var inDoubtOrder = $"o2-{unique}";
            Task<TpcResult> pending;
            await using (var locker = new NpgsqlConnection(databases.Inventory))
            {
                await locker.OpenAsync();
                await using var hold = await locker.BeginTransactionAsync();
                await using (var lockTable = new NpgsqlCommand("LOCK TABLE twopc_grain_state IN ACCESS EXCLUSIVE MODE", locker, hold))
                    await lockTable.ExecuteNonQueryAsync();
                pending = Tpc.RunAsync(["order", "--id", inDoubtOrder, "--account", account, "--address", "1 Main St", "--line", $"{sku}:2:100", .. client]);
                await WaitForAsync(async () => (await reader.PaymentsAsync(true, account)).Count == 1, TimeSpan.FromSeconds(30));
                coordinator.Kill();
                await hold.RollbackAsync();
            }

            log.WriteLine((await pending).ToString());
            Assert.Single(await reader.PaymentsAsync(true, account));

            // 4. A coordinator silo returns. It cannot read the payments database: the payment silo lists its
            //    own in-doubt participant, which then asks the coordinator and rolls back (presumed abort).
            await StartCoordinator("lp-coordinator2").WaitActiveAsync(StartTimeout, CancellationToken.None);
            await WaitForAsync(async () => (await reader.PaymentsAsync(true, account)).Count == 0, TimeSpan.FromSeconds(60));
            var timeline = await Expect(0, ["tx", inDoubtOrder, .. client]);
            Assert.Contains($"payment/{account}", timeline.Out);
            Assert.Contains("rolled back", timeline.Out);
            var inDoubt = await Expect(0, ["in-doubt", "--json", .. client]);
            Assert.Equal(0, JsonDocument.Parse(inDoubt.Out).RootElement.GetArrayLength());
            // Every service answers recovery (an error would name the one that did not).
            await Expect(0, ["recover", "--all", .. client]);

            // 5. The balance shows the first order only, and the operator's check (all credentials) is OK.
            var balance = await Expect(0, ["balance", account, .. client]);
            Assert.Contains("900", balance.Out);
            var check = await Expect(0, ["check", "--wait", "30", .. operatorSettings]);
            log.WriteLine(check.ToString());
        }
        catch
        {
            foreach (var silo in silos) log.WriteLine($"--- {silo.Name}{Environment.NewLine}{string.Join(Environment.NewLine, silo.LastLines(80))}");
            throw;
        }
        finally
        {
            foreach (var silo in silos) await silo.DisposeAsync();
        }
    }

    private async Task<TpcResult> Expect(int exitCode, string[] arguments)
    {
        var result = await Tpc.RunAsync(arguments);
        log.WriteLine($"tpc {arguments[0]}: {result}");
        Assert.True(result.ExitCode == exitCode, $"tpc {string.Join(' ', arguments.TakeWhile(a => !a.StartsWith("--C", StringComparison.Ordinal)))}: {result}");
        return result;
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"condition not reached within {timeout.TotalSeconds:0} s");
            await Task.Delay(50);
        }
    }
}
