using System.Net;
using Microsoft.Extensions.Configuration;
using OrleansTwoPC.Silo.Hosting;

namespace OrleansTwoPC.Silo.Admin;

/// <summary>
/// <c>TwoPC:Admin</c>: the operator console (HTTP admin API and web page) served by the silo. Loopback by
/// default; bound to any other address it needs at least one bearer token, named so that actions are
/// logged with who took them (<c>TwoPC:Admin:Tokens:alice=&lt;secret&gt;</c>).
/// </summary>
public sealed record AdminSettings(string Host, int Port, IReadOnlyDictionary<string, string> Tokens)
{
    public const string Section = "TwoPC:Admin";
    public const int DefaultPort = 8081;

    /// <summary>Shorter tokens are refused: they would be guessable.</summary>
    public const int MinTokenLength = 16;

    public string Url => $"http://{(Host.Contains(':') ? $"[{Host}]" : Host)}:{Port}";

    public bool IsLoopback => Host == "localhost" || IPAddress.Parse(Host) is var ip && IPAddress.IsLoopback(ip);

    /// <summary>Requests must carry a token when any is configured, and always off loopback (enforced at start-up).</summary>
    public bool RequiresToken => Tokens.Count > 0;

    public const string PrometheusKey = "TwoPC:Telemetry:Prometheus";

    /// <summary>
    /// <c>TwoPC:Telemetry:Prometheus=true</c> serves <c>/metrics</c> (Prometheus text format) on the console's port,
    /// with the console's access rules; it needs the console enabled.
    /// </summary>
    public static bool PrometheusEnabled(IConfiguration configuration)
    {
        var text = configuration[PrometheusKey];
        if (string.IsNullOrWhiteSpace(text)) return false;
        if (!bool.TryParse(text, out var on))
            throw new SiloStartupException($"{PrometheusKey} must be true or false, not '{text}'");
        if (on && FromConfiguration(configuration) is null)
            throw new SiloStartupException($"{PrometheusKey}=true serves /metrics on the operator console's port: set {Section}:Enabled=true too");
        return on;
    }

    /// <summary>The console's settings when it is enabled, else null. Bad settings are a <see cref="SiloStartupException"/>.</summary>
    public static AdminSettings? FromConfiguration(IConfiguration configuration)
    {
        var section = configuration.GetSection(Section);
        var enabled = section["Enabled"];
        if (string.IsNullOrWhiteSpace(enabled)) return null;
        if (!bool.TryParse(enabled, out var on))
            throw new SiloStartupException($"{Section}:Enabled must be true or false, not '{enabled}'");
        if (!on) return null;

        var host = section["Host"];
        if (string.IsNullOrWhiteSpace(host)) host = IPAddress.Loopback.ToString();
        else if (host != "localhost" && !IPAddress.TryParse(host, out _))
            throw new SiloStartupException($"{Section}:Host must be an IP address or localhost, not '{host}'");

        var portText = section["Port"];
        var port = DefaultPort;
        if (!string.IsNullOrWhiteSpace(portText) && (!int.TryParse(portText, out port) || port is < 1 or > 65535))
            throw new SiloStartupException($"{Section}:Port must be a TCP port (1-65535), not '{portText}'");

        var tokens = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var token in section.GetSection("Tokens").GetChildren())
        {
            if (string.IsNullOrWhiteSpace(token.Value) || token.Value.Trim().Length < MinTokenLength)
                throw new SiloStartupException($"{Section}:Tokens:{token.Key} must be at least {MinTokenLength} characters");
            if (tokens.ContainsValue(token.Value.Trim()))
                throw new SiloStartupException($"{Section}:Tokens:{token.Key} repeats another token; each operator needs their own");
            tokens[token.Key] = token.Value.Trim();
        }

        var settings = new AdminSettings(host, port, tokens);
        if (!settings.IsLoopback && tokens.Count == 0)
            throw new SiloStartupException(
                $"{Section}:Host is {host}, not loopback: every request then needs a bearer token, and none is configured " +
                $"(set {Section}:Tokens:<name>=<secret of at least {MinTokenLength} characters>)");
        return settings;
    }
}
