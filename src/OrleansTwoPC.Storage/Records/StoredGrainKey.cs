using System.Buffers.Text;
using System.Text;

namespace OrleansTwoPC.Storage.Records;

/// <summary>
/// How a grain's string key is written to <c>orleansstorage.grainidextensionstring</c>, so that every distinct
/// key gets its own row.
/// </summary>
/// <remarks>
/// Orleans' ADO.NET grain storage parses a string key as a hexadecimal integer or a GUID where it can, and then
/// stores the number in <c>grainidn0/n1</c> (and anything after a '+' as the extension): <c>cafe</c>,
/// <c>CAFE</c> and <c>0cafe</c> become one row, and so do <c>10</c> and <c>010</c>. Such keys are escaped with
/// a leading <see cref="Escape"/>, which makes both parses fail, so the provider stores the whole escaped key
/// as a string. Keys that never parsed are stored unchanged, as they always were; a key that itself starts
/// with the escape character is escaped too, which keeps the mapping one-to-one.
/// The parse rules mirror Orleans 10's <c>GrainIdKeyExtensions.TryGetIntegerKey/TryGetGuidKey</c>; a test
/// checks them against Orleans itself.
/// </remarks>
public static class StoredGrainKey
{
    public const char Escape = '~';

    /// <summary>The key as it must reach the grain storage provider.</summary>
    public static string Encode(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        return MustEscape(key) ? Escape + key : key;
    }

    /// <summary>The grain key of a stored extension string written by <see cref="Encode"/>.</summary>
    public static string Decode(string stored)
    {
        ArgumentNullException.ThrowIfNull(stored);
        return stored.Length > 0 && stored[0] == Escape ? stored[1..] : stored;
    }

    /// <summary>True when Orleans would not store <paramref name="key"/> as a plain string.</summary>
    public static bool MustEscape(string key) =>
        (key.Length > 0 && key[0] == Escape) || ParsesAsInteger(key) || ParsesAsGuid(key);

    private static bool ParsesAsInteger(string key)
    {
        // Orleans splits at the first '+' (key extension) and parses the part before it as hex.
        var bytes = Encoding.UTF8.GetBytes(key).AsSpan();
        var plus = bytes.IndexOf((byte)'+');
        if (plus >= 0) bytes = bytes[..plus];
        return Utf8Parser.TryParse(bytes, out long _, out var consumed, 'X') && consumed == bytes.Length;
    }

    private static bool ParsesAsGuid(string key)
    {
        var bytes = Encoding.UTF8.GetBytes(key).AsSpan();
        if (bytes.Length > 32 && bytes[32] == (byte)'+') bytes = bytes[..32];
        else if (bytes.Length != 32) return false;
        return Utf8Parser.TryParse(bytes, out Guid _, out var consumed, 'N') && consumed == 32;
    }
}
