namespace OrleansTwoPC.Abstractions;

/// <summary>What kind of failure a <see cref="TwoPcException"/> reports.</summary>
public enum TwoPcErrorCode
{
    /// <summary>A defect or an unexpected failure inside the cluster.</summary>
    Internal = 0,
    /// <summary>The request itself is wrong; repeating it unchanged fails again.</summary>
    InvalidRequest = 1,
    /// <summary>A service's database cannot be reached; nothing was decided by this call. Retry later.</summary>
    StorageUnavailable = 2,
    /// <summary>A service (its silo) cannot be reached or did not answer. Retry later.</summary>
    ServiceUnavailable = 3,
    /// <summary>A concurrent change won (a version conflict); the grain reloads, so a retry sees the new state.</summary>
    Conflict = 4,
}

/// <summary>
/// The one error type the cluster sends to its clients: a code and a one-line message. Every client has this
/// type (it is in the shared contract), so it always deserializes, unlike a driver's or a server-only exception.
/// </summary>
/// <remarks>An <see cref="OrleansException"/>, so that Orleans' grain-state storage passes it on unwrapped (it
/// wraps any other exception in a multi-line message carrying the stack trace), also when it fails an activation.</remarks>
[GenerateSerializer, Alias("twopc.TwoPcException")]
public sealed class TwoPcException : OrleansException
{
    /// <summary>Longest message kept; the rest of a long driver message is cut.</summary>
    public const int MaxMessageLength = 400;

    public TwoPcException(TwoPcErrorCode code, string message) : base(OneLine(message)) => Code = code;

    [Id(0)]
    public TwoPcErrorCode Code { get; private set; }

    public static TwoPcException StorageUnavailable(string message) => new(TwoPcErrorCode.StorageUnavailable, message);

    /// <summary>The first non-blank line of <paramref name="text"/>, trimmed and cut at <see cref="MaxMessageLength"/>.</summary>
    public static string OneLine(string? text)
    {
        var line = (text ?? "").Split('\n', '\r').Select(l => l.Trim()).FirstOrDefault(l => l.Length > 0) ?? "(no details)";
        return line.Length <= MaxMessageLength ? line : line[..(MaxMessageLength - 3)] + "...";
    }

    /// <summary>The first <see cref="TwoPcException"/> in <paramref name="exception"/> or the exceptions inside it.</summary>
    public static TwoPcException? Find(Exception? exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            if (current is TwoPcException found) return found;
            if (current is AggregateException aggregate)
                return aggregate.InnerExceptions.Select(Find).FirstOrDefault(e => e is not null);
        }

        return null;
    }
}
