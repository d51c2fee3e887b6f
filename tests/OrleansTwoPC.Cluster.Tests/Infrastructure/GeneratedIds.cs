using CsCheck;
using OrleansTwoPC.Silo.Demo;

namespace OrleansTwoPC.Cluster.Tests.Infrastructure;

/// <summary>
/// Families of distinct ids that Orleans' ADO.NET key mapping would read as one number or GUID (digits with
/// leading zeros, hex in both cases, GUID shapes, punctuation around numeric-looking text, maximum length),
/// unique per sample, so tests never assume the examples someone thought of are representative.
/// </summary>
public static class GeneratedIds
{
    private static int _sample;

    public static readonly Gen<string[]> Families = Gen.OneOf(
        // digits and leading zeros: 7, 07, 007, and at maximum length
        Gen.String[Gen.Char["0123456789"], 1, 10].Select(d => Unique(d, hex: false) is var u
            ? new[] { u, "0" + u, "00" + u, u.PadLeft(OrderPlan.MaxIdLength, '0') } : []),
        // hex in both cases with leading zeros: cafe, CAFE, 0cafe, CaFe
        Gen.String[Gen.Char["0123456789abcdef"], 1, 8].Select(h => Unique(h, hex: true) is var u
            ? new[] { u, u.ToUpperInvariant(), "0" + u, MixedCase(u) } : []),
        // GUID shapes: N in both cases, D
        Gen.Guid.Select(g => new[] { g.ToString("N"), g.ToString("N").ToUpperInvariant(), g.ToString("D") }),
        // punctuation allowed by validation around numeric-looking text
        Gen.String[Gen.Char["0123456789abcdef"], 1, 6].Select(h => Unique(h, hex: true) is var u
            ? new[] { u, u + ".0", u + ":1", u + "_", u + "-0", "0" + u + "-0" } : []))
        .Select(family => family.Distinct(StringComparer.Ordinal).ToArray());

    /// <summary>Text of the generated shape followed by a per-sample counter of the same alphabet, so samples never share an id.</summary>
    private static string Unique(string generated, bool hex)
    {
        var n = Interlocked.Increment(ref _sample);
        var counter = hex ? n.ToString("x6", System.Globalization.CultureInfo.InvariantCulture) : n.ToString("D6", System.Globalization.CultureInfo.InvariantCulture);
        return generated + counter;
    }

    private static string MixedCase(string s) => new(s.Select((c, i) => i % 2 == 0 ? char.ToUpperInvariant(c) : c).ToArray());
}
