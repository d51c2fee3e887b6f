using OrleansTwoPC.Cluster.Tests.Infrastructure;

namespace OrleansTwoPC.Cluster.Tests;

[Collection(ClusterCollection.Name)]
public sealed class ResubmissionAndValidationTests(TwoPcClusterFixture fixture) : ClusterTestBase(fixture)
{
    [Fact]
    public async Task Resubmitted_order_returns_the_same_outcome_and_charges_once()
    {
        var sku = await NewSku(10);
        var account = await NewAccount(5000);
        var order = Order(account, (sku, 2, 700));

        var first = await Place(order);
        var second = await Place(order);
        await WaitCompleted(order.OrderId);
        var third = await Place(order with { Lines = order.Lines.ToList() });

        Assert.Equal(OrderStatus.Committed, first.Status);
        Assert.Equal(first.Status, second.Status);
        Assert.Equal(first.TransactionId, third.TransactionId);
        Assert.Equal(OrderStatus.Committed, third.Status);
        Assert.Equal(5000 - 1400, (await Balance(account)).Committed);
        Assert.Equal(1400, (await Balance(account)).ConsumedTotal);
        Assert.Equal(8, (await Stock(sku)).Committed);
    }

    [Fact]
    public async Task Resubmitted_aborted_order_stays_aborted_even_when_it_could_now_commit()
    {
        var sku = await NewSku(1);
        var account = await NewAccount(5000);
        var order = Order(account, (sku, 2, 100));
        var first = await Place(order);
        Assert.Equal(OrderStatus.Aborted, first.Status);
        await WaitCompleted(order.OrderId);

        await Grains.GetGrain<IInventoryGrain>(sku).SetStock(50);
        var again = await Place(order);

        Assert.Equal(OrderStatus.Aborted, again.Status);
        Assert.Equal(first.Reason, again.Reason);
        Assert.Equal(50, (await Stock(sku)).Committed);
        Assert.Equal(5000, (await Balance(account)).Committed);
    }

    [Fact]
    public async Task Same_order_id_with_different_content_is_rejected()
    {
        var sku = await NewSku(10);
        var account = await NewAccount(5000);
        var order = Order(account, (sku, 1, 100));
        Assert.Equal(OrderStatus.Committed, (await Place(order)).Status);

        var changed = order with { Lines = new[] { new OrderLine(sku, 5, 100) } };
        var outcome = await Place(changed);

        Assert.Equal(OrderStatus.Rejected, outcome.Status);
        Assert.Contains("different content", outcome.Reason);
        await WaitCompleted(order.OrderId);
        Assert.Equal(9, (await Stock(sku)).Committed);
        Assert.Equal(4900, (await Balance(account)).Committed);
    }

    public static IEnumerable<object[]> BadOrders()
    {
        yield return new object[] { "empty order", "order has no lines" };
        yield return new object[] { "zero quantity", "quantity must be positive" };
        yield return new object[] { "negative quantity", "quantity must be positive" };
        yield return new object[] { "zero price", "unit price must be positive" };
        yield return new object[] { "negative price", "unit price must be positive" };
        yield return new object[] { "overflow", "overflows" };
        yield return new object[] { "too many participants", "at most 10" };
        yield return new object[] { "blank account", "account id is blank" };
        yield return new object[] { "blank sku", "SKU of line 1 is blank" };
        yield return new object[] { "blank address", "shipping address is blank" };
        yield return new object[] { "unknown sku", "unknown SKU" };
        yield return new object[] { "unknown account", "unknown account" };
    }

    [Theory]
    [MemberData(nameof(BadOrders))]
    public async Task Bad_input_is_rejected_without_starting_a_transaction_or_changing_anything(string kind, string expected)
    {
        var sku = await NewSku(10);
        var account = await NewAccount(1000);
        var good = Order(account, (sku, 1, 100));
        var order = kind switch
        {
            "empty order" => good with { Lines = Array.Empty<OrderLine>() },
            "zero quantity" => good with { Lines = new[] { new OrderLine(sku, 0, 100) } },
            "negative quantity" => good with { Lines = new[] { new OrderLine(sku, -2, 100) } },
            "zero price" => good with { Lines = new[] { new OrderLine(sku, 1, 0) } },
            "negative price" => good with { Lines = new[] { new OrderLine(sku, 1, -100) } },
            "overflow" => good with { Lines = new[] { new OrderLine(sku, int.MaxValue, long.MaxValue / 2) } },
            "too many participants" => good with { Lines = Enumerable.Range(0, 9).Select(i => new OrderLine($"{sku}-{i}", 1, 1)).ToList() },
            "blank account" => good with { AccountId = " " },
            "blank sku" => good with { Lines = new[] { new OrderLine("", 1, 100) } },
            "blank address" => good with { ShippingAddress = "" },
            "unknown sku" => good with { Lines = new[] { new OrderLine(sku, 1, 100), new OrderLine("NO-SUCH-" + sku, 1, 100) } },
            "unknown account" => good with { AccountId = "no-such-" + account },
            _ => throw new ArgumentOutOfRangeException(nameof(kind)),
        };

        var outcome = await Place(order);

        Assert.Equal(OrderStatus.Rejected, outcome.Status);
        Assert.Contains(expected, outcome.Reason);
        var report = await Report(order.OrderId);
        Assert.Equal("Idle", report.Phase);
        await AssertUntouched(sku, 10, account, 1000, order.OrderId);
    }
}
