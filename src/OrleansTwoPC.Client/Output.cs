using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace OrleansTwoPC.Client;

/// <summary>Text and JSON rendering for the console.</summary>
public static class Output
{
    public static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>Writes <paramref name="value"/> as indented JSON.</summary>
    public static void WriteJson<T>(TextWriter writer, T value) => writer.WriteLine(JsonSerializer.Serialize(value, Json));

    /// <summary>The first line of a message, trimmed: errors are reported on exactly one line.</summary>
    public static string OneLine(string? message)
    {
        if (string.IsNullOrWhiteSpace(message))
        {
            return "(no details)";
        }

        var text = message.Trim();
        var newline = text.IndexOfAny(['\r', '\n']);
        return (newline >= 0 ? text[..newline] : text).Trim();
    }

    public static string Age(TimeSpan age)
    {
        if (age < TimeSpan.Zero) age = TimeSpan.Zero;
        if (age.TotalSeconds < 60) return age.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture) + "s";
        if (age.TotalMinutes < 60) return $"{(int)age.TotalMinutes}m{age.Seconds:00}s";
        if (age.TotalHours < 48) return $"{(int)age.TotalHours}h{age.Minutes:00}m";
        return $"{(int)age.TotalDays}d{age.Hours:00}h";
    }

    public static string Time(DateTimeOffset? at) =>
        at is { } value ? value.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture) : "-";

    /// <summary>A plain left-aligned text table with a header row.</summary>
    public static void WriteTable(TextWriter writer, IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string>> rows)
    {
        var all = rows.ToList();
        var widths = headers.Select(h => h.Length).ToArray();
        foreach (var row in all)
        {
            for (var i = 0; i < widths.Length && i < row.Count; i++)
            {
                widths[i] = Math.Max(widths[i], row[i].Length);
            }
        }

        void Line(IReadOnlyList<string> cells)
        {
            var text = new StringBuilder();
            for (var i = 0; i < widths.Length; i++)
            {
                var cell = i < cells.Count ? cells[i] : "";
                text.Append(i == widths.Length - 1 ? cell : cell.PadRight(widths[i] + 2));
            }

            writer.WriteLine(text.ToString().TrimEnd());
        }

        Line(headers);
        foreach (var row in all)
        {
            Line(row);
        }
    }
}
