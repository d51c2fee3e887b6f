using System.Text.RegularExpressions;

namespace OrleansTwoPC.Abstractions;

/// <summary>
/// Turns Orleans' placement failure ("No active nodes are compatible with grain paymentaccount ...") into
/// what it means for an operator: no silo of that service role is running.
/// </summary>
public static partial class ServiceAvailability
{
    private static readonly Dictionary<string, string> ServiceOfGrainType = new(StringComparer.OrdinalIgnoreCase)
    {
        ["inventory"] = "inventory",
        ["paymentaccount"] = "payment",
        ["shipment"] = "shipping",
        ["transactioncoordinator"] = "coordinator",
        ["transactionadmin"] = "coordinator",
        ["recoveryagent"] = "coordinator",
    };

    [GeneratedRegex(@"No active nodes are compatible with grain (?<type>[\w.-]+)")]
    private static partial Regex NoCompatibleSilo();

    /// <summary>A one-line explanation when <paramref name="message"/> is a placement failure, else the message unchanged.</summary>
    public static string Describe(string message)
    {
        var match = NoCompatibleSilo().Match(message);
        if (!match.Success) return message;
        var grainType = match.Groups["type"].Value;
        return ServiceOfGrainType.TryGetValue(grainType, out var service)
            ? $"the {service} service is down: no silo with role '{service}' (or 'all') is running (grain type {grainType})"
            : $"no running silo may host grain type {grainType}";
    }
}
