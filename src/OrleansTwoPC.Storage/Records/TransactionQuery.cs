using System.Globalization;

namespace OrleansTwoPC.Storage.Records;

/// <summary>
/// Where a transaction stands, as operators filter by it. Exclusive: every transaction has exactly one.
/// </summary>
public enum TransactionStatus
{
    /// <summary>Decided COMMIT and every participant acknowledged it.</summary>
    Committed,

    /// <summary>Decided ABORT (a no vote, a failure, a timeout, presumed or heuristic) and every participant acknowledged it.</summary>
    Aborted,

    /// <summary>Prepared by at least one participant with no durable decision: the participant cannot decide alone.</summary>
    InDoubt,

    /// <summary>Decided, but phase two is not acknowledged by every participant yet.</summary>
    InFlight,
}

/// <summary>The one spelling of each status in URLs, JSON and on the command line.</summary>
public static class TransactionStatuses
{
    public static readonly IReadOnlyList<string> Names = ["committed", "aborted", "in-doubt", "in-flight"];

    public static string Name(TransactionStatus status) => status switch
    {
        TransactionStatus.Committed => "committed",
        TransactionStatus.Aborted => "aborted",
        TransactionStatus.InDoubt => "in-doubt",
        _ => "in-flight",
    };

    public static bool TryParse(string? text, out TransactionStatus status)
    {
        var index = Names.ToList().IndexOf(text?.Trim().ToLowerInvariant() ?? "");
        status = index < 0 ? default : (TransactionStatus)index;
        return index >= 0;
    }
}

/// <summary>
/// A page of transactions: optionally one status, a start-time range [Since, Until) and one order id, newest
/// first. Build it with <see cref="Parse"/>, which refuses bad input with a message naming the field.
/// </summary>
public sealed record TransactionQuery(
    TransactionStatus? Status = null,
    DateTimeOffset? Since = null,
    DateTimeOffset? Until = null,
    string? OrderId = null,
    int Offset = 0,
    int Limit = TransactionQuery.DefaultLimit)
{
    public const int DefaultLimit = 50;
    public const int MaxLimit = 500;

    /// <summary>Paging merges the in-doubt set (computed in memory) with coordinator rows sorted in SQL, which
    /// reads <c>Offset + Limit</c> rows: this bounds that read.</summary>
    public const int MaxOffset = 100_000;

    /// <summary>Longest age accepted for <c>since</c>/<c>until</c> (a century): longer ones are typos.</summary>
    public const int MaxAgeDays = 36_500;

    /// <summary>
    /// Parses the text form used by the HTTP API and <c>tpc list</c>. Times are ISO 8601 instants
    /// (<c>2026-11-30T04:00:00Z</c>) or an age (<c>90s</c>, <c>15m</c>, <c>2h</c>, <c>1d</c>: that long before
    /// <paramref name="now"/>). Throws <see cref="FormatException"/> naming the bad field.
    /// </summary>
    public static TransactionQuery Parse(string? status, string? since, string? until, string? orderId, string? offset, string? limit, DateTimeOffset now)
    {
        TransactionStatus? parsedStatus = null;
        if (!string.IsNullOrWhiteSpace(status))
        {
            if (!TransactionStatuses.TryParse(status, out var s))
                throw new FormatException($"status must be one of {string.Join(", ", TransactionStatuses.Names)}, not '{status}'");
            parsedStatus = s;
        }

        var from = ParseTime(since, "since", now);
        var to = ParseTime(until, "until", now);
        if (from is not null && to is not null && from >= to)
            throw new FormatException($"since ({from:O}) must be before until ({to:O})");
        var skip = ParseWhole(offset, "offset", 0, MaxOffset, 0);
        var take = ParseWhole(limit, "limit", 1, MaxLimit, DefaultLimit);
        string? order = null;
        if (!string.IsNullOrWhiteSpace(orderId))
        {
            order = orderId.Trim();
            if (order.Length > 200 || order.Any(char.IsControl))
                throw new FormatException("orderId must be at most 200 characters with no control characters");
        }

        return new TransactionQuery(parsedStatus, from, to, order, skip, take);
    }

    public static DateTimeOffset? ParseTime(string? text, string field, DateTimeOffset now)
    {
        if (string.IsNullOrWhiteSpace(text)) return null;
        text = text.Trim();
        var unit = text[^1];
        if (unit is 's' or 'm' or 'h' or 'd'
            && long.TryParse(text[..^1], NumberStyles.None, CultureInfo.InvariantCulture, out var amount) && amount <= MaxAgeDays * 24L * 3600)
        {
            var age = unit switch
            {
                's' => TimeSpan.FromSeconds(amount),
                'm' => TimeSpan.FromMinutes(amount),
                'h' => TimeSpan.FromHours(amount),
                _ => TimeSpan.FromDays(amount),
            };
            if (age <= TimeSpan.FromDays(MaxAgeDays)) return now - age;
        }

        // An instant must say its offset: a local time would mean different things on different machines.
        if (DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.None, out var at)
            && (text.EndsWith('Z') || text.EndsWith("z", StringComparison.Ordinal) || HasOffset(text)))
            return at.ToUniversalTime();
        throw new FormatException($"{field} must be an ISO 8601 time with its offset (2026-11-30T04:00:00Z) or an age such as 90s, 15m, 2h, 1d; not '{text}'");
    }

    private static bool HasOffset(string text)
    {
        var t = text.IndexOf('T');
        if (t < 0) return false;
        var time = text[(t + 1)..];
        return time.Contains('+') || time.Contains('-');
    }

    private static int ParseWhole(string? text, string field, int min, int max, int fallback)
    {
        if (string.IsNullOrWhiteSpace(text)) return fallback;
        if (int.TryParse(text.Trim(), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
            return value;
        throw new FormatException($"{field} must be a whole number from {min} to {max}, not '{text}'");
    }
}

/// <summary>One transaction in a list.</summary>
public sealed record TransactionSummary(
    string TransactionId,
    string? OrderId,
    string Status,
    string Decision,
    string? AbortReason,
    bool Heuristic,
    DateTimeOffset StartedAt,
    DateTimeOffset? DecidedAt,
    DateTimeOffset? CompletedAt,
    IReadOnlyList<string> Participants);

/// <summary>One page of a <see cref="TransactionQuery"/>; <see cref="Total"/> counts every match.</summary>
public sealed record TransactionPage(long Total, int Offset, int Limit, IReadOnlyList<TransactionSummary> Items);
