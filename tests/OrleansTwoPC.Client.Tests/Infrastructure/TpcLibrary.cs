using System.Reflection;
using OrleansTwoPC.Abstractions;

namespace OrleansTwoPC.Client.Tests.Infrastructure;

/// <summary>
/// The built tpc.dll loaded into the test process, to call its input parsers directly (thousands of generated
/// cases; the process tests check a sample of them end to end). Not a project reference: the client's
/// appsettings.json would then replace the silo's beside the tests.
/// </summary>
public static class TpcLibrary
{
    private static readonly Lazy<Type> Parsers = new(() =>
        Assembly.LoadFrom(Tpc.DllPath).GetType("OrleansTwoPC.Client.InputParsers", throwOnError: true)!);

    public static OrderLine? ParseLine(string text, out string? error)
    {
        var arguments = new object?[] { text, null };
        var line = (OrderLine?)Method("ParseLine").Invoke(null, arguments);
        error = (string?)arguments[1];
        return line;
    }

    public static string FormatLine(OrderLine line) => (string)Method("FormatLine").Invoke(null, [line])!;

    private static MethodInfo Method(string name) =>
        Parsers.Value.GetMethod(name, BindingFlags.Public | BindingFlags.Static) ?? throw new MissingMethodException("InputParsers", name);
}
