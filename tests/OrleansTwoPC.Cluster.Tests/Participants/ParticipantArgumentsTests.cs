using CsCheck;
using OrleansTwoPC.Grains.Participants;

namespace OrleansTwoPC.Cluster.Tests.Participants;

/// <summary>A participant accepts exactly the transaction ids an accepted order id gives, and the shipments such an order sends.</summary>
public sealed class ParticipantArgumentsTests
{
    private static readonly Gen<string> Ids = Gen.Select(
            Gen.Char["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"],
            Gen.String[Gen.Char["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-"], 0, OrderPlan.MaxIdLength + 8])
        .Select((first, rest) => first + rest);

    private static bool OrderAccepts(string orderId)
    {
        try
        {
            OrderPlan.CheckResourceId(orderId, "order id");
            return true;
        }
        catch (OrderValidationException)
        {
            return false;
        }
    }

    [Fact]
    public void A_transaction_id_is_accepted_exactly_when_it_is_the_transaction_id_of_an_accepted_order_id()
    {
        Ids.Sample(id =>
        {
            Assert.Equal(OrderAccepts(id), ParticipantArguments.CheckTransactionId(TransactionIds.FromOrderId(id)) is null);
            Assert.NotNull(ParticipantArguments.CheckTransactionId(id.StartsWith("tx-", StringComparison.Ordinal) ? "t" + id : id));
        });
    }

    [Fact]
    public void The_shipment_of_any_valid_order_is_accepted()
    {
        Gen.Select(Ids.Where(OrderAccepts).Array[1, OrderPlan.MaxParticipants - 2], Gen.String[Gen.Char.AlphaNumeric, 1, OrderPlan.MaxAddressLength]).Sample((skus, address) =>
        {
            var order = new OrderRequest("o-1", skus.Distinct().Select(s => new OrderLine(s, 1, 1)).ToList(), "acct", address);
            var plan = OrderPlan.Create(order);
            Assert.Null(ParticipantArguments.CheckShipment(new ShipmentRequest(order.ShippingAddress, plan.MergedLines)));
        });
    }
}
