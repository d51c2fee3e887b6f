using System.Data.Common;
using Microsoft.Extensions.Configuration;
using Npgsql;

namespace OrleansTwoPC.Storage;

/// <summary>A PostgreSQL setting that cannot be used: one line naming the setting and what is wrong.</summary>
public sealed class PostgresSettingsException(string message, Exception? inner = null) : InvalidOperationException(message, inner);

/// <summary>
/// TLS for every PostgreSQL connection of a process, from <c>TwoPC:Postgres:SslMode</c> (Npgsql's
/// <see cref="Npgsql.SslMode"/>: Disable, Allow, Prefer, Require, VerifyCA, VerifyFull) and
/// <c>TwoPC:Postgres:RootCertificate</c> (the CA that signed the server's certificate, PEM). Each is added to
/// a connection string that does not set it itself, so one setting covers the derived and the explicit
/// databases alike. <c>Require</c> encrypts; <c>VerifyFull</c> also proves the server is who the host name says.
/// </summary>
public sealed record PostgresTls(SslMode? Mode, string? RootCertificate)
{
    public const string SslModeKey = "TwoPC:Postgres:SslMode";
    public const string RootCertificateKey = "TwoPC:Postgres:RootCertificate";

    private static readonly string[] SslModeKeys = ["SSL Mode", "SslMode", "sslmode"];
    private static readonly string[] RootCertificateKeys = ["Root Certificate", "RootCertificate"];

    public static PostgresTls None { get; } = new(null, null);

    /// <summary>Reads and checks the settings; an unusable one is a <see cref="PostgresSettingsException"/> with one line.</summary>
    public static PostgresTls FromConfiguration(IConfiguration configuration)
    {
        var modeText = configuration[SslModeKey];
        SslMode? mode = null;
        if (!string.IsNullOrWhiteSpace(modeText))
        {
            if (!Enum.TryParse<SslMode>(modeText.Trim(), ignoreCase: true, out var parsed) || !Enum.IsDefined(parsed))
                throw new PostgresSettingsException($"{SslModeKey} must be one of {string.Join(", ", Enum.GetNames<SslMode>())}, not '{modeText}'");
            mode = parsed;
        }

        var root = string.IsNullOrWhiteSpace(configuration[RootCertificateKey]) ? null : configuration[RootCertificateKey]!.Trim();
        if (root is not null && !File.Exists(root))
            throw new PostgresSettingsException($"{RootCertificateKey}: {root} does not exist");
        if (root is not null && mode is not (SslMode.VerifyCA or SslMode.VerifyFull))
            throw new PostgresSettingsException($"{RootCertificateKey} is only used to verify the server: set {SslModeKey} to VerifyCA or VerifyFull");
        return new PostgresTls(mode, root);
    }

    /// <summary>The connection string with these settings added where it does not choose its own.</summary>
    public string Apply(string connectionString)
    {
        if (Mode is null && RootCertificate is null || string.IsNullOrWhiteSpace(connectionString)) return connectionString;
        var raw = new DbConnectionStringBuilder { ConnectionString = connectionString };
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (Mode is { } mode && !SslModeKeys.Any(raw.ContainsKey)) builder.SslMode = mode;
        if (RootCertificate is not null && !RootCertificateKeys.Any(raw.ContainsKey)) builder.RootCertificate = RootCertificate;
        return builder.ConnectionString;
    }

    /// <summary>The four databases with these settings added (an absent one stays absent).</summary>
    public ServiceDatabases Apply(ServiceDatabases databases) =>
        new(Apply(databases.Inventory), Apply(databases.Payments), Apply(databases.Shipping), Apply(databases.Coordinator));
}
