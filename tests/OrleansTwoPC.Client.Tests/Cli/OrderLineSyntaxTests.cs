using System.Globalization;
using CsCheck;
using OrleansTwoPC.Abstractions;
using OrleansTwoPC.Client.Tests.Infrastructure;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// <c>--line</c>: every valid (SKU, quantity, price) has a spelling that reads back as exactly itself, and
/// every malformed line is refused with an error naming the problem (exit 2 from <c>tpc</c>), never guessed
/// at: <c>A:1:1:1</c> is not silently SKU <c>A:1</c>.
/// </summary>
public sealed class OrderLineSyntaxTests
{
    // Id-like text: letters, digits and the id punctuation (':' often), sometimes with one character ids may
    // not hold. SKUs are whatever the order validation accepts, so a change of its alphabet is exercised too.
    private static readonly Gen<string> IdLike = Gen.Select(
        Gen.String[Gen.Char["Aa9Zz0._-::::"], 1, OrderPlan.MaxIdLength],
        Gen.Frequency((4, Gen.Const("")), (1, Gen.String[Gen.Char[" =,@/é#"], 1, 1])),
        Gen.Int[0, OrderPlan.MaxIdLength],
        (text, extra, at) => text.Insert(Math.Min(at, text.Length), extra));

    private static readonly Gen<string> ValidSku = IdLike.Where(IsValidId);

    private static readonly Gen<string> BadSku = Gen.String[Gen.Char["Aa9._- @/é#"], 0, OrderPlan.MaxIdLength + 2].Where(s => !IsValidId(s));

    private static readonly Gen<string> SkuWithoutColon = ValidSku.Select(s => s.Replace(':', '-')).Where(IsValidId);

    private static readonly Gen<OrderLine> ValidLine =
        Gen.Select(ValidSku, Gen.Int[1, int.MaxValue], Gen.Long[1, long.MaxValue], (sku, quantity, price) => new OrderLine(sku, quantity, price));

    private static readonly Gen<string> BadQuantity = Gen.OneOf(
        Gen.Const("0"), Gen.Const(""), Gen.Const("-1"), Gen.Const("+1"), Gen.Const("1.5"), Gen.Const(" 1"), Gen.Const("two"),
        Gen.Long[(long)int.MaxValue + 1, long.MaxValue].Select(Text));

    private static readonly Gen<string> BadPrice = Gen.OneOf(
        Gen.Const("0"), Gen.Const(""), Gen.Const("-5"), Gen.Const("1e3"), Gen.Const("9.99"), Gen.Const("ten"),
        Gen.Const("9223372036854775808"), Gen.Const("99999999999999999999"));

    /// <summary>A malformed line and a word its error must contain.</summary>
    private static readonly Gen<(string Line, string Problem)> MalformedLine = Gen.OneOf(
        // SKU:QTY:PRICE with a SKU that holds ':' (or one field too many): refused, not guessed at.
        Gen.Select(ValidSku.Where(s => s.Contains(':')), Gen.Int[1, int.MaxValue], Gen.Long[1, long.MaxValue],
            (sku, q, p) => ($"{sku}:{Text(q)}:{Text(p)}", "':' where SKU:QTY:PRICE has 2")),
        Gen.Select(SkuWithoutColon, Gen.Int[1, int.MaxValue], Gen.Long[1, long.MaxValue], Gen.Int[0, 99],
            (sku, q, p, extra) => ($"{sku}:{Text(q)}:{Text(p)}:{Text(extra)}", "':' where SKU:QTY:PRICE has 2")),
        Gen.Select(SkuWithoutColon, Gen.Int[1, int.MaxValue], (sku, q) => ($"{sku}:{Text(q)}", "expected SKU:QTY:PRICE")),
        SkuWithoutColon.Select(sku => (sku, "expected SKU:QTY:PRICE")),
        Gen.Select(SkuWithoutColon, BadQuantity, Gen.Long[1, long.MaxValue], (sku, q, p) => ($"{sku}:{q}:{Text(p)}", $"quantity '{q}'")),
        Gen.Select(SkuWithoutColon, Gen.Int[1, int.MaxValue], BadPrice, (sku, q, p) => ($"{sku}:{Text(q)}:{p}", $"price '{p}'")),
        Gen.Select(BadSku, Gen.Int[1, int.MaxValue], Gen.Long[1, long.MaxValue], (sku, q, p) => ($"{sku}:{Text(q)}:{Text(p)}", "SKU")),
        // The spelled-out form: each key exactly once, nothing else.
        Gen.Select(ValidSku, BadQuantity, Gen.Long[1, long.MaxValue], (sku, q, p) => ($"sku={sku},qty={q},price={Text(p)}", $"quantity '{q}'")),
        Gen.Select(ValidSku, Gen.Int[1, int.MaxValue], BadPrice, (sku, q, p) => ($"price={p},sku={sku},qty={Text(q)}", $"price '{p}'")),
        Gen.Select(ValidSku, Gen.Int[1, int.MaxValue], (sku, q) => ($"sku={sku},qty={Text(q)}", "price= missing")),
        Gen.Select(Gen.Int[1, int.MaxValue], Gen.Long[1, long.MaxValue], (q, p) => ($"qty={Text(q)},price={Text(p)}", "sku= missing")),
        Gen.Select(ValidSku, Gen.Int[1, int.MaxValue], Gen.Long[1, long.MaxValue],
            (sku, q, p) => ($"sku={sku},qty={Text(q)},qty={Text(q)},price={Text(p)}", "qty= is given twice")),
        Gen.Select(ValidSku, Gen.Int[1, int.MaxValue], Gen.Long[1, long.MaxValue],
            (sku, q, p) => ($"sku={sku},quantity={Text(q)},price={Text(p)}", "unknown key 'quantity'")),
        Gen.Select(ValidSku, Gen.Int[1, int.MaxValue], Gen.Long[1, long.MaxValue],
            (sku, q, p) => ($"sku={sku},qty={Text(q)},price={Text(p)},", "is not KEY=VALUE")),
        Gen.Select(BadSku, Gen.Int[1, int.MaxValue], Gen.Long[1, long.MaxValue], (sku, q, p) => ($"sku={sku},qty={Text(q)},price={Text(p)}", "SKU")));

    [Fact]
    public void Every_valid_line_formats_to_text_that_parses_back_to_exactly_itself()
    {
        ValidLine.Sample(line =>
        {
            var text = TpcLibrary.FormatLine(line);
            var parsed = TpcLibrary.ParseLine(text, out var error);
            Assert.True(error is null, $"{line} as '{text}': {error}");
            Assert.Equal(line, parsed);
        }, iter: 2000);
    }

    [Fact]
    public void A_sku_without_colon_keeps_the_short_spelling()
    {
        Gen.Select(SkuWithoutColon, Gen.Int[1, int.MaxValue], Gen.Long[1, long.MaxValue]).Sample(t =>
        {
            var (sku, quantity, price) = t;
            Assert.Equal($"{sku}:{Text(quantity)}:{Text(price)}", TpcLibrary.FormatLine(new OrderLine(sku, quantity, price)));
            Assert.Equal(new OrderLine(sku, quantity, price), TpcLibrary.ParseLine($"{sku}:{Text(quantity)}:{Text(price)}", out _));
        });
    }

    [Fact]
    public void Every_malformed_line_is_refused_with_an_error_naming_the_problem()
    {
        MalformedLine.Sample(t =>
        {
            var (text, problem) = t;
            var parsed = TpcLibrary.ParseLine(text, out var error);
            Assert.True(parsed is null, $"'{text}' was accepted as {parsed}");
            Assert.NotNull(error);
            Assert.StartsWith($"bad --line '{text}': ", error);
            Assert.Contains(problem, error);
        }, iter: 3000);
    }

    [Fact]
    public void Whatever_text_is_accepted_is_a_valid_line_written_one_way()
    {
        // Arbitrary text over the syntax's own characters: anything accepted is a valid line, and the short
        // form is accepted only with exactly two ':' (no SKU is ever guessed out of more fields).
        var field = Gen.OneOf(Gen.Int[0, 99].Select(i => Text(i)), Gen.OneOf(Gen.Const("A"), Gen.Const("b-7"), Gen.Const(""), Gen.Const("sku=A"), Gen.Const("qty=3"), Gen.Const("price=5")));
        var text = Gen.Select(field, Gen.Select(Gen.Char[":,"], field).Array[0, 5],
            (first, rest) => first + string.Concat(rest.Select(r => r.Item1 + r.Item2)));
        text.Sample(text =>
        {
            if (TpcLibrary.ParseLine(text, out _) is not { } line) return;
            Assert.True(IsValidId(line.Sku) && line.Quantity > 0 && line.UnitPrice > 0, $"'{text}' accepted as {line}");
            if (!text.Contains('=')) Assert.Equal(2, text.Count(c => c == ':'));
            Assert.Equal(line, TpcLibrary.ParseLine(TpcLibrary.FormatLine(line), out _));
        }, iter: 5000);
    }

    [Fact]
    public async Task Tpc_order_refuses_malformed_lines_with_exit_2_and_one_line()
    {
        // A sample end to end: the real executable refuses before connecting to anything.
        foreach (var (text, problem) in MalformedLine.Array[8].Single())
        {
            var result = await Tpc.RunAsync("order", "--id", "o-1", "--account", "acct-1", "--address", "1 Main St", "--line", text);

            CliUsageTests.AssertOneLineError(result, 2, $"bad --line '{text}': ");
            Assert.Contains(problem, result.Error);
            Assert.Equal("", result.Out);
        }
    }

    private static bool IsValidId(string id)
    {
        try
        {
            OrderPlan.CheckResourceId(id, "SKU");
            return true;
        }
        catch (OrderValidationException)
        {
            return false;
        }
    }

    private static string Text(long value) => value.ToString(CultureInfo.InvariantCulture);
}
