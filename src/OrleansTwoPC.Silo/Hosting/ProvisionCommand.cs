using Microsoft.Extensions.Configuration;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// <c>OrleansTwoPC.Silo provision</c>: the operator step that prepares a least-privilege deployment. With an
/// admin connection (<c>ConnectionStrings:PostgresServer</c>) it creates the four databases and the schema, and
/// one login per service with only the rights its silos need (<see cref="ServiceLogins"/>); the silos then run
/// with <c>TwoPC:ProvisionDatabases=false</c> and their own service's connection strings. Safe to run again
/// (it sets the passwords anew). Passwords come from <c>TwoPC:Logins:&lt;service&gt;:Password</c> or a mounted
/// file (<c>:PasswordFile</c>) and are never printed.
/// </summary>
public static class ProvisionCommand
{
    public static async Task<int> RunAsync(string[] settings, TextWriter output, TextWriter error)
    {
        var configuration = SiloHostBuilder.ReadConfiguration(settings);
        try
        {
            var server = configuration.GetConnectionString(PostgresTopology.PostgresServerName);
            if (string.IsNullOrWhiteSpace(server))
                throw new PostgresSettingsException($"provision needs an admin connection: ConnectionStrings:{PostgresTopology.PostgresServerName}");
            server = PostgresTls.FromConfiguration(configuration).Apply(server);
            var prefix = string.IsNullOrWhiteSpace(configuration[PostgresTopology.DatabasePrefixKey])
                ? PostgresTopology.DefaultDatabasePrefix
                : configuration[PostgresTopology.DatabasePrefixKey]!.Trim();
            var logins = ServiceLogins.FromConfiguration(configuration, prefix);
            var commitDelay = GroupCommitSettings.ReadCommitDelay(configuration);
            var databases = await ServiceLogins.ProvisionAsync(server, prefix, logins, commitDelay);
            output.WriteLine($"Provisioned {string.Join(", ", databases.All.Select(d => PostgresConnectionStrings.DatabaseOf(d.Value)))} and {logins.Count} logins:");
            if (commitDelay > 0 && !await GroupCommitSettings.ApplyAsync(databases.Coordinator, commitDelay))
                output.WriteLine($"  commit_delay was not set (this login may not set it): set it as a superuser, or {GroupCommitSettings.CommitDelayKey}=0");
            foreach (var login in logins)
            {
                var names = login.Service == ServiceLogins.Client
                    ? ["Coordinator"]
                    : ServiceLogins.DatabasesFor([login.Service]);
                output.WriteLine($"  {login.Service}: login '{login.User}' for " +
                                 string.Join(" and ", names.Select(n => $"ConnectionStrings:{n}=\"{ServiceLogins.ConnectionString(server, PostgresConnectionStrings.DatabaseOf(databases[n]), login, withPassword: false)};Password=...\"")));
            }

            output.WriteLine("Start each silo with its own login's connection strings and TwoPC:ProvisionDatabases=false.");
            return 0;
        }
        catch (Exception ex) when (ex is PostgresSettingsException or ArgumentException or Npgsql.NpgsqlException or InvalidOperationException)
        {
            error.WriteLine($"error: {(ex is PostgresSettingsException ? ex.Message : ex.GetBaseException().Message)}");
            return 1;
        }
    }
}
