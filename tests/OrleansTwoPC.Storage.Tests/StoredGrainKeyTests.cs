using CsCheck;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>
/// The key mapping of grain storage: every string key gets a row of its own. Checked against Orleans' own
/// key parsers (what AdoNetGrainStorage uses to pick numeric or string columns) on generated keys.
/// </summary>
public sealed class StoredGrainKeyTests
{
    private const string Hex = "0123456789abcdefABCDEF";

    /// <summary>Keys of the shapes that Orleans parses (digits, hex in both cases, GUIDs, '+' extensions), plus any text.</summary>
    public static readonly Gen<string> Keys = Gen.OneOf(
        Gen.String[Gen.Char["0123456789"], 1, 20],
        Gen.String[Gen.Char[Hex], 1, 17],
        Gen.Guid.Select(g => g.ToString("N")),
        Gen.Guid.Select(g => g.ToString("N").ToUpperInvariant()),
        Gen.Guid.Select(g => g.ToString("D")),
        Gen.Select(Gen.String[Gen.Char[Hex], 0, 8], Gen.String[Gen.Char[Hex + "+x~é"], 0, 8], (a, b) => a + "+" + b),
        Gen.Select(Gen.Guid, Gen.String[Gen.Char["ab+"], 0, 4], (g, b) => g.ToString("N") + "+" + b),
        Gen.Select(Gen.Char["~0"], Gen.String[Gen.Char[Hex + "~"], 0, 10], (c, s) => c + s),
        Gen.String[Gen.Char["0aZ9._:-~+ é漢"], 1, 64],
        Gen.String)
        // Orleans refuses blank grain keys, so they never reach storage.
        .Where(k => !string.IsNullOrWhiteSpace(k));

    [Fact]
    public void Escaping_matches_Orleans_key_parsers_and_round_trips()
    {
        Keys.Sample(key =>
        {
            var orleansParses = OrleansParsesAsNumber(key);
            Assert.Equal(orleansParses || key.StartsWith(StoredGrainKey.Escape), StoredGrainKey.MustEscape(key));
            var stored = StoredGrainKey.Encode(key);
            // What reaches the provider is always stored as the exact string, never as a number.
            Assert.False(OrleansParsesAsNumber(stored), $"'{stored}' would still be stored as a number");
            Assert.Equal(key, StoredGrainKey.Decode(stored));
        }, iter: 20_000);
    }

    [Fact]
    public void Distinct_keys_are_stored_under_distinct_strings()
    {
        // Families of keys that Orleans maps to one number: cafe, CAFE, 0cafe, 00cafe ...
        var families = Gen.String[Gen.Char[Hex], 1, 12].Select(h => new[] { h, h.ToLowerInvariant(), h.ToUpperInvariant(), "0" + h, "00" + h, "~" + h, "~~" + h });
        families.Sample(family =>
        {
            var keys = family.Distinct(StringComparer.Ordinal).ToList();
            var stored = keys.Select(StoredGrainKey.Encode).Distinct(StringComparer.Ordinal).ToList();
            Assert.Equal(keys.Count, stored.Count);
        }, iter: 5_000);
    }

    [Theory]
    [InlineData("cafe", "~cafe")]
    [InlineData("12345", "~12345")]
    [InlineData("SKU-1", "SKU-1")]
    [InlineData("~x", "~~x")]
    [InlineData("b1+anything", "~b1+anything")]
    [InlineData("zz+1", "zz+1")]
    public void Examples(string key, string stored) => Assert.Equal(stored, StoredGrainKey.Encode(key));

    private static bool OrleansParsesAsNumber(string key)
    {
        var id = GrainId.Create("probe", key);
        return id.TryGetIntegerKey(out _, out _) || id.TryGetGuidKey(out _, out _);
    }
}
