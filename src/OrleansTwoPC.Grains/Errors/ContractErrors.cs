using System.Data.Common;
using System.Reflection;
using Orleans.Storage;

namespace OrleansTwoPC.Grains.Errors;

/// <summary>
/// Decides which exceptions a client can receive as they are, and turns every other one into a
/// <see cref="TwoPcException"/> with a code and a one-line message.
/// </summary>
public static class ContractErrors
{
    private static readonly Assembly Contract = typeof(TwoPcException).Assembly;

    /// <summary>The Orleans client library: every client has it, so its exception types deserialize there.</summary>
    private static readonly HashSet<string> ClientLibraries = new(StringComparer.Ordinal)
    {
        "Orleans.Core", "Orleans.Core.Abstractions", "Orleans.Serialization", "Orleans.Serialization.Abstractions",
    };

    /// <summary>
    /// True when a client that has only the shared contract, the Orleans client library and the base library
    /// can deserialize <paramref name="exception"/> and every exception inside it, and it is not a storage
    /// failure (which is always reported as <see cref="TwoPcErrorCode.StorageUnavailable"/>).
    /// </summary>
    public static bool PassesAsIs(Exception exception) => IsClientReadable(exception) && !IsStorageFailure(exception)
        // Orleans' own storage wrapper carries the driver's stack trace in a multi-line message.
        && !(exception.GetType() == typeof(OrleansException) && exception.Message.Contains('\n'));

    /// <summary>A caller-readable <see cref="TwoPcException"/> that says what <paramref name="exception"/> means.</summary>
    public static TwoPcException ToContract(Exception exception, string operation)
    {
        if (TwoPcException.Find(exception) is { } contract) return contract;
        var innermost = Innermost(exception);
        if (IsStorageFailure(exception))
            return new TwoPcException(TwoPcErrorCode.StorageUnavailable, $"storage unavailable during {operation}: {Describe(Find(exception, e => e is DbException) ?? innermost)}");
        if (Find(exception, e => e is InconsistentStateException) is { } conflict)
            return new TwoPcException(TwoPcErrorCode.Conflict, $"{operation} conflicted with a concurrent change, try again: {TwoPcException.OneLine(conflict.Message)}");
        if (Find(exception, e => e is SiloUnavailableException or OrleansMessageRejectionException or TimeoutException) is { } unreachable)
            return new TwoPcException(TwoPcErrorCode.ServiceUnavailable, $"service unavailable during {operation}: {ServiceAvailability.Describe(TwoPcException.OneLine(unreachable.Message))}");
        if (ServiceAvailability.Describe(innermost.Message) is var described && described != innermost.Message)
            return new TwoPcException(TwoPcErrorCode.ServiceUnavailable, $"service unavailable during {operation}: {described}");
        if (Find(exception, e => e is ArgumentException or OrderValidationException) is { } invalid)
            return new TwoPcException(TwoPcErrorCode.InvalidRequest, $"{operation} refused: {TwoPcException.OneLine(invalid.Message)}");
        return new TwoPcException(TwoPcErrorCode.Internal, $"internal error during {operation}: {Describe(innermost)}");
    }

    /// <summary>One line for logs and replies: the exception's type and the first line of its message.</summary>
    public static string Describe(Exception exception) => TwoPcException.OneLine($"{exception.GetType().Name}: {TwoPcException.OneLine(exception.Message)}");

    /// <summary>A database failure: the driver's exception (a <see cref="DbException"/>, as Npgsql's are), or one
    /// already reported as storage unavailable. A version conflict is not one: the database answered.</summary>
    public static bool IsStorageFailure(Exception exception) =>
        Find(exception, e => e is DbException || e is TwoPcException { Code: TwoPcErrorCode.StorageUnavailable }) is not null
        && Find(exception, e => e is InconsistentStateException) is null;

    private static bool IsClientReadable(Exception exception)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            var assembly = current.GetType().Assembly;
            var name = assembly.GetName().Name ?? "";
            var readable = assembly == Contract || assembly == typeof(object).Assembly
                || name.StartsWith("System.", StringComparison.Ordinal) || ClientLibraries.Contains(name);
            if (!readable) return false;
            if (current is AggregateException aggregate) return aggregate.InnerExceptions.All(IsClientReadable);
        }

        return true;
    }

    private static Exception Innermost(Exception exception)
    {
        var current = exception;
        while (true)
        {
            var next = current is AggregateException { InnerExceptions.Count: > 0 } aggregate ? aggregate.InnerExceptions[0] : current.InnerException;
            if (next is null) return current;
            current = next;
        }
    }

    /// <summary>The first exception in <paramref name="exception"/>'s chain (inner and aggregated ones) that matches.</summary>
    public static Exception? Find(Exception? exception, Func<Exception, bool> match)
    {
        for (var current = exception; current is not null; current = current.InnerException)
        {
            if (match(current)) return current;
            if (current is AggregateException aggregate)
                return aggregate.InnerExceptions.Select(e => Find(e, match)).FirstOrDefault(e => e is not null);
        }

        return null;
    }
}
