using CsCheck;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using Orleans.Serialization;
using Orleans.Storage;
using OrleansTwoPC.Grains.Errors;
using OrleansTwoPC.Grains.Faults;

namespace OrleansTwoPC.Cluster.Tests.Hosting;

/// <summary>
/// What a client may receive: generated chains of exceptions (the driver's, server-only types, the base
/// library's, Orleans', the contract's, nested in aggregates, with multi-line and very long messages) are
/// either passed on because a client can read every one of them, or turned into one contract error with a
/// one-line message and the right code, which survives Orleans serialization.
/// </summary>
public sealed class ContractErrorsTests
{
    private const int Kinds = 9;

    private static readonly Serializer Serializer = new ServiceCollection()
        .AddSerializer(b => b.AddAssembly(typeof(TwoPcException).Assembly))
        .BuildServiceProvider()
        .GetRequiredService<Serializer>();

    private sealed record Link(int Kind, string Message, TwoPcErrorCode Code);

    private static readonly Gen<string> Message = Gen.OneOf(
        Gen.String,
        Gen.String[Gen.Char.AlphaNumeric, 0, 30].Select(s => $"{s}\n   at Some.Frame()\r\n{s}"),
        Gen.Char.AlphaNumeric.Array[1000, 3000].Select(chars => new string(chars)));

    private static readonly Gen<Exception> Chain = Gen.Select(Gen.Int[0, Kinds - 1], Message, Gen.Enum<TwoPcErrorCode>(), (kind, message, code) => new Link(kind, message, code))
        .Array[1, 5]
        .Select(Build);

    [Fact]
    public void Every_exception_reaches_a_client_readable_or_as_one_contract_error_with_one_line()
    {
        Chain.Sample(exception =>
        {
            var all = Flatten(exception).ToList();
            var translated = ContractErrors.ToContract(exception, "PlaceOrder of transactioncoordinator/tx-1");

            Assert.DoesNotContain('\n', translated.Message);
            Assert.DoesNotContain('\r', translated.Message);
            Assert.InRange(translated.Message.Length, 1, TwoPcException.MaxMessageLength);

            var contract = all.OfType<TwoPcException>().FirstOrDefault();
            var storage = all.Any(e => e is NpgsqlException || e is TwoPcException { Code: TwoPcErrorCode.StorageUnavailable });
            var conflict = all.Any(e => e is InconsistentStateException);
            if (contract is not null) Assert.Same(contract, translated);
            else if (conflict) Assert.Equal(TwoPcErrorCode.Conflict, translated.Code);
            else if (storage) Assert.Equal(TwoPcErrorCode.StorageUnavailable, translated.Code);

            if (ContractErrors.PassesAsIs(exception))
            {
                Assert.All(all, e => Assert.True(ClientReadable(e.GetType()), $"{e.GetType()} passed to a client"));
                Assert.False(storage && !conflict, "a storage failure passed unchanged");
            }

            var received = Assert.IsType<TwoPcException>(Serializer.Deserialize<Exception>(Serializer.SerializeToArray<Exception>(translated)));
            Assert.Equal((translated.Code, translated.Message), (received.Code, received.Message));
        }, iter: 2000);
    }

    [Fact]
    public void A_version_conflict_is_not_a_storage_outage()
    {
        var conflict = new InconsistentStateException("version conflict", "1", "2");

        Assert.False(ContractErrors.IsStorageFailure(conflict));
        Assert.True(ContractErrors.PassesAsIs(conflict));
        Assert.Equal(TwoPcErrorCode.Conflict, ContractErrors.ToContract(conflict, "write").Code);
    }

    private static Exception Build(Link[] links)
    {
        Exception? inner = null;
        foreach (var link in links.Reverse()) inner = Make(link, inner);
        return inner!;
    }

    private static Exception Make(Link link, Exception? inner)
    {
        // Types that take no inner exception are put beside it in an aggregate.
        Exception Beside(Exception single) => inner is null ? single : new AggregateException(link.Message, single, inner);
        return link.Kind switch
        {
            0 => new NpgsqlException(link.Message, inner),
            1 => new InvalidOperationException(link.Message, inner),
            2 => inner is null ? new OrleansException(link.Message) : new OrleansException(link.Message, inner),
            3 => Beside(new InconsistentStateException(link.Message, "1", "2")),
            4 => new TimeoutException(link.Message, inner),
            5 => Beside(new InjectedFaultException(link.Message)),
            6 => Beside(new TwoPcException(link.Code, link.Message)),
            7 => new AggregateException(link.Message, inner ?? new ArgumentException(link.Message), new ArgumentException(link.Message)),
            _ => Beside(new SiloUnavailableException(link.Message)),
        };
    }

    private static IEnumerable<Exception> Flatten(Exception exception)
    {
        yield return exception;
        var inner = exception is AggregateException aggregate ? aggregate.InnerExceptions : (IEnumerable<Exception>)(exception.InnerException is { } one ? [one] : []);
        foreach (var child in inner.SelectMany(Flatten)) yield return child;
    }

    private static bool ClientReadable(Type type)
    {
        var name = type.Assembly.GetName().Name ?? "";
        return type.Assembly == typeof(TwoPcException).Assembly || type.Assembly == typeof(object).Assembly
            || name.StartsWith("System.", StringComparison.Ordinal) || name.StartsWith("Orleans.Core", StringComparison.Ordinal)
            || name.StartsWith("Orleans.Serialization", StringComparison.Ordinal);
    }
}
