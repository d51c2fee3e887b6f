using System.Diagnostics;
using Npgsql;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OrleansTwoPC.Abstractions;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Records;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Admin;

/// <summary>
/// The operator page in a real browser: Debian's headless Chromium driven by Selenium through chromium-driver,
/// against a real silo process. A screenshot of each page goes to <c>screenshots/</c> in the test output directory.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class BrowserConsoleTests(PostgresFixture postgres, ITestOutputHelper log)
{
    private const string Chromium = "/usr/bin/chromium";
    private const string ChromeDriver = "/usr/bin/chromedriver";
    private static readonly string Screenshots = Path.Combine(AppContext.BaseDirectory, "screenshots");

    [Fact]
    public async Task An_operator_sees_the_load_finds_an_aborted_order_and_recovers_an_in_doubt_transaction()
    {
        var missing = new[] { (Chromium, "chromium"), (ChromeDriver, "chromium-driver") }.Where(b => !File.Exists(b.Item1)).ToList();
        Assert.True(missing.Count == 0,
            $"the browser test needs Debian's Chromium: {string.Join(" and ", missing.Select(m => $"{m.Item1} (package {m.Item2})"))} not found; " +
            "install them with 'apt-get install -y chromium chromium-driver' (.ci/run does)");

        var port = ChildSilo.FreePort();
        await using var silo = await SiloServer.StartAsync(postgres.AdminConnectionString, "browser", TimeSpan.FromSeconds(90),
            new Dictionary<string, string>
            {
                ["TwoPC:Admin:Enabled"] = "true",
                ["TwoPC:Admin:Port"] = port.ToString(),
                // Nothing asks about an in-doubt transaction by itself during the test: only the operator's recover.
                ["TwoPC:Protocol:InDoubtTimeout"] = "01:00:00",
                ["TwoPC:Recovery:SweepInterval"] = "01:00:00",
                // The start-up sweep's follow-up runs at once, long before the test makes anything in doubt.
                ["TwoPC:Recovery:CoordinatorGrace"] = "00:00:00",
            });
        using var http = new AdminHttp(port);
        Directory.CreateDirectory(Screenshots);
        using var driver = StartChromium();
        try
        {
            await http.WaitUpAsync(TimeSpan.FromSeconds(30));

            // The overview during a load run with aborts: commits and aborts by reason appear on their own (auto refresh).
            var run = Guid.NewGuid().ToString("N")[..6];
            var load = Tpc.RunAsync(["load", "--orders", "300", "--concurrency", "8", "--abort-mix", "0.3", "--skus", "5", "--accounts", "5",
                "--run-id", $"b{run}", .. silo.TpcSettings]);
            driver.Navigate().GoToUrl(http.BaseUrl + "/");
            Until(driver, d => d.FindElements(By.Id("commit-rate")).Count > 0 && !d.FindElement(By.Id("commit-rate")).Text.StartsWith("0.00/s"),
                TimeSpan.FromSeconds(60), "commits on the overview during the load");
            Until(driver, d => d.FindElement(By.Id("abort-rate")).Text is var t && !t.StartsWith("0.00/s"), TimeSpan.FromSeconds(60), "aborts on the overview");
            Shot(driver, "1-overview-during-load");
            var loaded = await load;
            Assert.True(loaded.ExitCode == 0, loaded.ToString());
            log.WriteLine(loaded.Out);

            // Find an aborted order through the search form, open it, and see why it aborted.
            driver.FindElement(By.XPath("//select[@name='status']/option[text()='aborted']")).Click();
            driver.FindElement(By.CssSelector("#search button[type=submit]")).Click();
            Until(driver, d => d.FindElements(By.CssSelector("#transactions td.status-aborted")).Count > 0
                               && d.FindElements(By.CssSelector("#transactions td.status-committed")).Count == 0,
                TimeSpan.FromSeconds(20), "only aborted transactions in the list");
            Shot(driver, "2-aborted-orders");
            var link = driver.FindElement(By.CssSelector("#transactions a.tx-link"));
            var abortedTx = link.Text;
            link.Click();
            Until(driver, d => d.FindElements(By.Id("tx-status")).Count > 0 && d.FindElement(By.Id("tx-status")).Text == "aborted",
                TimeSpan.FromSeconds(20), $"{abortedTx} shown as aborted");
            Assert.Contains(abortedTx, driver.FindElement(By.Id("tx-title")).Text);
            Assert.Contains("decision Abort written", driver.FindElement(By.Id("timeline")).Text);
            Assert.Contains("rolled back", driver.FindElement(By.Id("participants")).Text);
            Shot(driver, "3-aborted-transaction");

            // An in-doubt transaction: the coordinator database refuses the decision write (a trigger), so every
            // participant is prepared and the coordinator does not know whether its decision is durable. Nothing
            // settles it by itself until someone asks; the operator's recover does, by presumed abort.
            await using var client = await LibraryClient.ConnectAsync(silo);
            var sku = $"sku-{run}";
            var payer = $"payer-{run}";
            var order = $"doubt-{run}";
            await client.Grains.GetGrain<IInventoryGrain>(sku).SetStock(10);
            await client.Grains.GetGrain<IPaymentAccountGrain>(payer).SetBalance(1_000);
            var databases = PostgresTopology.DeriveDatabases(silo.AdminConnectionString, silo.Prefix);
            await Coordinator(databases, "CREATE FUNCTION refuse_decision() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'test: decision write refused'; END $$ LANGUAGE plpgsql; " +
                                         "CREATE TRIGGER refuse_decision BEFORE INSERT OR UPDATE ON twopc_grain_state FOR EACH ROW " +
                                         $"WHEN (NEW.state_name = '{OrleansTwoPC.Protocol.StateNames.Coordinator}') EXECUTE FUNCTION refuse_decision()");
            OrderOutcome placed;
            try
            {
                placed = await client.Grains.GetGrain<ITransactionCoordinatorGrain>(TransactionIds.FromOrderId(order))
                    .PlaceOrder(new OrderRequest(order, [new OrderLine(sku, 1, 100)], payer, "1 Browser St"));
            }
            finally
            {
                await Coordinator(databases, "DROP TRIGGER refuse_decision ON twopc_grain_state; DROP FUNCTION refuse_decision()");
            }
            Assert.True(placed.Status == OrderStatus.InDoubt, $"{placed.Status}: {placed.Reason}");

            driver.FindElement(By.LinkText("Overview")).Click();
            Until(driver, d => d.FindElements(By.CssSelector("#in-doubt .value")).Count > 0 && d.FindElement(By.CssSelector("#in-doubt .value")).Text == "1",
                TimeSpan.FromSeconds(30), "one transaction in doubt on the overview");
            Shot(driver, "4-overview-in-doubt");
            driver.Navigate().GoToUrl($"{http.BaseUrl}/#/tx/tx-{order}");
            Until(driver, d => d.FindElements(By.Id("tx-status")).Count > 0 && d.FindElement(By.Id("tx-status")).Text == "in-doubt",
                TimeSpan.FromSeconds(20), $"tx-{order} shown in doubt");
            Assert.Contains("prepared", driver.FindElement(By.Id("participants")).Text);
            // Several refreshes later it is still in doubt: nothing but the operator will settle it here.
            await Task.Delay(TimeSpan.FromSeconds(6));
            Assert.Equal("in-doubt", driver.FindElement(By.Id("tx-status")).Text);
            driver.FindElement(By.Id("recover")).Click();
            Until(driver, d => d.FindElements(By.Id("confirm-yes")).Count > 0, TimeSpan.FromSeconds(10), "the confirmation");
            Shot(driver, "5-recover-confirmation");
            driver.FindElement(By.Id("confirm-yes")).Click();
            Until(driver, d => d.FindElements(By.Id("message")).Count > 0 && d.FindElement(By.Id("message")).Text.Contains($"recovery of tx-{order}: 3 participant(s) asked"),
                TimeSpan.FromSeconds(60), "the recovery report");
            Until(driver, d => d.FindElements(By.Id("tx-status")).Count > 0 && d.FindElement(By.Id("tx-status")).Text == "aborted",
                TimeSpan.FromSeconds(60), $"tx-{order} resolved by presumed abort (the page refreshes by itself)");
            Assert.Contains("presumed abort", driver.FindElement(By.Id("timeline")).Text);
            Shot(driver, "6-recovered");
            Assert.Equal("0", await OverviewInDoubt(driver, http));
        }
        catch
        {
            Shot(driver, "failure");
            log.WriteLine(silo.Output);
            throw;
        }
    }

    private static async Task Coordinator(ServiceDatabases databases, string sql)
    {
        await using var connection = new NpgsqlConnection(databases.Coordinator);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<string> OverviewInDoubt(IWebDriver driver, AdminHttp http)
    {
        driver.Navigate().GoToUrl(http.BaseUrl + "/#/");
        await Task.Yield();
        Until(driver, d => d.FindElements(By.CssSelector("#in-doubt .value")).Count > 0 && d.FindElement(By.CssSelector("#in-doubt .value")).Text == "0",
            TimeSpan.FromSeconds(30), "nothing in doubt on the overview");
        return driver.FindElement(By.CssSelector("#in-doubt .value")).Text;
    }

    private static ChromeDriver StartChromium()
    {
        var options = new ChromeOptions { BinaryLocation = Chromium };
        options.AddArguments("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000");
        var service = ChromeDriverService.CreateDefaultService(Path.GetDirectoryName(ChromeDriver)!, Path.GetFileName(ChromeDriver));
        service.SuppressInitialDiagnosticInformation = true;
        return new ChromeDriver(service, options, TimeSpan.FromSeconds(60));
    }

    private void Shot(IWebDriver driver, string name)
    {
        try
        {
            var path = Path.Combine(Screenshots, $"{name}.png");
            ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(path);
            log.WriteLine($"screenshot: {path}");
        }
        catch (WebDriverException ex)
        {
            log.WriteLine($"screenshot {name} failed: {ex.Message}");
        }
    }

    /// <summary>Polls the page until <paramref name="condition"/> holds; fails naming what never appeared.</summary>
    private static void Until(IWebDriver driver, Func<IWebDriver, bool> condition, TimeSpan timeout, string what)
    {
        var waited = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if (condition(driver)) return;
            }
            catch (StaleElementReferenceException)
            {
                // The page re-rendered between finding and reading an element: look again.
            }

            if (waited.Elapsed > timeout)
            {
                var error = driver.FindElements(By.Id("error")).FirstOrDefault()?.Text;
                Assert.Fail($"{what}: not seen within {timeout.TotalSeconds:0} s{(error is null ? "" : $" (page error: {error})")}; page text:\n{driver.FindElement(By.TagName("body")).Text}");
            }

            Thread.Sleep(200);
        }
    }
}
