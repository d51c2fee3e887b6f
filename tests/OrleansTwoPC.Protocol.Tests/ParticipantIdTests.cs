using CsCheck;

namespace OrleansTwoPC.Protocol.Tests;

/// <summary>Participant ids as text (kind/key), the form records and logs hold them in.</summary>
public sealed class ParticipantIdTests
{
    private static readonly Gen<string> Keys = Gen.String[Gen.Char["ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:/-"], 1, 20];

    [Fact]
    public void Parse_ReadsBackWhatToStringWrites_AKeyMayHoldSlashes()
    {
        Gen.Select(Gen.Enum<ParticipantKind>(), Keys).Sample((kind, key) =>
        {
            var id = new ParticipantId(kind, key);
            Assert.Equal(id, ParticipantId.Parse(id.ToString()));
        });
    }

    [Theory]
    [InlineData("inventory/")]
    [InlineData("/SKU-1")]
    [InlineData("SKU-1")]
    [InlineData("warehouse/SKU-1")]
    [InlineData("")]
    public void Parse_RefusesTextWithoutAKindAndAKey_SayingWhatItExpects(string text)
    {
        var ex = Assert.Throws<FormatException>(() => ParticipantId.Parse(text));
        Assert.Equal($"'{text}' is not a participant id (expected kind/key, e.g. inventory/SKU-1)", ex.Message);
    }
}
