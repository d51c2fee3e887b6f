using System.Net;
using System.Text.RegularExpressions;
using Npgsql;
using YamlDotNet.Core;
using YamlDotNet.Serialization;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>
/// Keeps docker-compose.yml and the Dockerfiles in step with what the hosts really read: service names,
/// Dockerfile paths, configuration keys (README's configuration reference), the PostgreSQL host, the
/// cluster identity shared by silos and client, advertised addresses and the .NET image tags.
/// No Docker engine is needed; CI additionally runs <c>docker-compose config -q</c>.
/// </summary>
public sealed class DeploymentFilesTests
{
    private const string PostgresService = "postgres";
    private const string ClientService = "client";

    /// <summary>Keys the silo reads (README: "Using your own PostgreSQL" and "Configuration reference"), env spelling.</summary>
    private static readonly string[] SiloExactKeys =
    [
        "ConnectionStrings__PostgresServer",
        "ConnectionStrings__Inventory",
        "ConnectionStrings__Payments",
        "ConnectionStrings__Shipping",
        "ConnectionStrings__Coordinator",
        "TwoPC__DatabasePrefix",
        "TwoPC__ClusterId",
        "TwoPC__ServiceId",
        "TwoPC__SiloPort",
        "TwoPC__GatewayPort",
        "TwoPC__AdvertisedIp",
        "TwoPC__Roles",
    ];

    private static readonly string[] SiloKeyPrefixes =
    [
        "TwoPC__Protocol__",
        "TwoPC__Recovery__",
        "TwoPC__Logging__",
        "Orleans__",
    ];

    /// <summary>Keys tpc reads (ClientSettings and PostgresTopology).</summary>
    private static readonly string[] ClientExactKeys =
    [
        "ConnectionStrings__PostgresServer",
        "ConnectionStrings__Inventory",
        "ConnectionStrings__Payments",
        "ConnectionStrings__Shipping",
        "ConnectionStrings__Coordinator",
        "TwoPC__DatabasePrefix",
        "TwoPC__ClusterId",
        "TwoPC__ServiceId",
    ];

    private static readonly string[] ClientKeyPrefixes = ["TwoPC__Client__"];

    private static readonly Lazy<string> Root = new(FindRepositoryRoot);

    private static readonly Lazy<Dictionary<string, object?>> Compose = new(LoadCompose);

    [Fact]
    public void Compose_has_postgres_silos_and_client_services()
    {
        var services = Services();
        Assert.Contains(PostgresService, services.Keys);
        Assert.Contains(ClientService, services.Keys);
        Assert.NotEmpty(SiloServices());

        var postgres = Map(services[PostgresService]);
        Assert.StartsWith("postgres:15", Scalar(postgres, "image"));
        var healthcheck = Map(postgres["healthcheck"]);
        Assert.Contains("pg_isready", string.Join(" ", Strings(healthcheck["test"])));
        Assert.NotNull(Scalar(Map(postgres["environment"]), "POSTGRES_PASSWORD"));

        var namedVolumes = Compose.Value.TryGetValue("volumes", out var volumes) ? Map(volumes).Keys.ToList() : [];
        var mounted = Strings(postgres["volumes"]).Select(v => v.Split(':')[0]).ToList();
        Assert.Contains(mounted, namedVolumes.Contains);
    }

    [Fact]
    public void Every_build_dockerfile_exists_relative_to_its_context()
    {
        var withBuild = 0;
        foreach (var (name, service) in Services())
        {
            if (!Map(service).TryGetValue("build", out var build))
            {
                continue;
            }

            withBuild++;
            var buildMap = Map(build);
            var context = Path.GetFullPath(Path.Combine(Root.Value, Scalar(buildMap, "context") ?? "."));
            Assert.True(Directory.Exists(context), $"{name}: build context {context} does not exist");
            var dockerfile = Path.Combine(context, Scalar(buildMap, "dockerfile") ?? "Dockerfile");
            Assert.True(File.Exists(dockerfile), $"{name}: {dockerfile} does not exist");
            Assert.True(File.Exists(Path.Combine(context, "OrleansTwoPC.sln")),
                $"{name}: the Dockerfiles copy from the repository root, so the build context must be it");
        }

        Assert.True(withBuild >= 2, "the silo and the client are built from this repository");
    }

    [Fact]
    public void Silos_run_serve_after_postgres_is_healthy()
    {
        foreach (var (name, silo) in SiloServices())
        {
            Assert.Equal("src/OrleansTwoPC.Silo/Dockerfile", Scalar(Map(silo["build"]), "dockerfile"));
            Assert.Equal(["serve"], Strings(silo["command"]));
            var dependsOn = Map(silo["depends_on"]);
            Assert.True(dependsOn.ContainsKey(PostgresService), $"{name} must depend on {PostgresService}");
            Assert.Equal("service_healthy", Scalar(Map(dependsOn[PostgresService]), "condition"));
        }

        var client = Map(Services()[ClientService]);
        Assert.Equal("src/OrleansTwoPC.Client/Dockerfile", Scalar(Map(client["build"]), "dockerfile"));
        Assert.Equal(["dotnet", "tpc.dll"], Strings(client["entrypoint"]));
    }

    [Fact]
    public void Every_service_role_has_its_own_silo()
    {
        // The silo host accepts these roles (ServiceRoles in the grains project); "all" or none means every role.
        string[] roles = ["coordinator", "inventory", "payment", "shipping"];
        var byRole = roles.ToDictionary(r => r, _ => new List<string>());
        foreach (var (name, silo) in SiloServices())
        {
            var environment = Environment(silo);
            var setting = environment.TryGetValue("TwoPC__Roles", out var value) ? Resolve(value) : null;
            var siloRoles = string.IsNullOrWhiteSpace(setting) || setting == "all"
                ? roles
                : setting.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            foreach (var role in siloRoles)
            {
                Assert.True(byRole.ContainsKey(role), $"{name}: unknown role '{role}' in TwoPC__Roles");
                byRole[role].Add(name);
            }
        }

        foreach (var (role, silos) in byRole)
        {
            Assert.True(silos.Count >= 1, $"no silo hosts the {role} service");
        }

        Assert.True(SiloServices().Count >= 4, "a silo per service role");
    }

    [Fact]
    public void Silo_environment_uses_only_keys_the_silo_reads()
    {
        foreach (var (name, silo) in SiloServices())
        {
            var environment = Environment(silo);
            foreach (var key in environment.Keys)
            {
                Assert.True(SiloExactKeys.Contains(key, StringComparer.Ordinal) || SiloKeyPrefixes.Any(p => key.StartsWith(p, StringComparison.Ordinal)),
                    $"{name}: '{key}' is not a configuration key the silo reads (README configuration reference)");
            }

            foreach (var required in new[] { "ConnectionStrings__PostgresServer", "TwoPC__DatabasePrefix", "TwoPC__ClusterId", "TwoPC__AdvertisedIp" })
            {
                Assert.True(environment.ContainsKey(required), $"{name} must set {required}");
            }

            foreach (var port in new[] { "TwoPC__SiloPort", "TwoPC__GatewayPort" })
            {
                if (environment.TryGetValue(port, out var value))
                {
                    Assert.True(int.TryParse(Resolve(value), out var number) && number is > 0 and < 65536, $"{name}: {port}={value}");
                }
            }
        }
    }

    [Fact]
    public void Client_environment_uses_only_keys_tpc_reads()
    {
        var environment = Environment(Map(Services()[ClientService]));
        foreach (var key in environment.Keys)
        {
            Assert.True(ClientExactKeys.Contains(key, StringComparer.Ordinal) || ClientKeyPrefixes.Any(p => key.StartsWith(p, StringComparison.Ordinal)),
                $"client: '{key}' is not a configuration key tpc reads");
        }
    }

    [Fact]
    public void Connection_strings_point_at_the_postgres_service()
    {
        var postgresPassword = Resolve(Scalar(Map(Map(Services()[PostgresService])["environment"]), "POSTGRES_PASSWORD")!);
        foreach (var (name, service) in SiloServices().Append(new(ClientService, Map(Services()[ClientService]))))
        {
            var environment = Environment(service);
            Assert.True(environment.TryGetValue("ConnectionStrings__PostgresServer", out var connectionString), $"{name} has no ConnectionStrings__PostgresServer");
            var builder = new NpgsqlConnectionStringBuilder(Resolve(connectionString!));
            Assert.Equal(PostgresService, builder.Host);
            Assert.Equal(5432, builder.Port);
            Assert.Equal(postgresPassword, builder.Password);
        }
    }

    [Fact]
    public void Client_and_silos_share_cluster_identity_and_database_prefix()
    {
        var client = Environment(Map(Services()[ClientService]));
        foreach (var key in new[] { "TwoPC__ClusterId", "TwoPC__DatabasePrefix", "TwoPC__ServiceId" })
        {
            var clientValue = client.TryGetValue(key, out var c) ? Resolve(c) : null;
            foreach (var (name, silo) in SiloServices())
            {
                var siloValue = Environment(silo).TryGetValue(key, out var s) ? Resolve(s) : null;
                Assert.True(clientValue == siloValue, $"{key}: client '{clientValue}' but {name} '{siloValue}'");
            }
        }
    }

    [Fact]
    public void Silos_advertise_their_own_distinct_container_address()
    {
        var advertised = new List<string>();
        foreach (var (name, silo) in SiloServices())
        {
            var ip = Resolve(Environment(silo)["TwoPC__AdvertisedIp"]);
            Assert.True(IPAddress.TryParse(ip, out var address), $"{name}: TwoPC__AdvertisedIp '{ip}' is not an IP address (Program.cs parses it)");
            Assert.False(IPAddress.IsLoopback(address) || address.Equals(IPAddress.Any),
                $"{name}: a container must advertise an address other containers reach, not {ip}");

            // ConfigureEndpoints binds to the advertised address, so it must be the container's own: a fixed ipv4_address.
            var networks = Map(silo["networks"]);
            var fixedAddresses = networks.Values.Where(v => v is not null)
                .Select(v => Scalar(Map(v), "ipv4_address")).Where(v => v is not null).ToList();
            Assert.Contains(ip, fixedAddresses);
            advertised.Add(ip);
        }

        Assert.Equal(advertised.Count, advertised.Distinct().Count());
    }

    [Theory]
    [InlineData("src/OrleansTwoPC.Silo/Dockerfile", "src/OrleansTwoPC.Silo/OrleansTwoPC.Silo.csproj")]
    [InlineData("src/OrleansTwoPC.Client/Dockerfile", "src/OrleansTwoPC.Client/OrleansTwoPC.Client.csproj")]
    public void Dockerfiles_build_with_the_net10_sdk_and_run_on_the_net10_runtime(string dockerfile, string project)
    {
        var lines = File.ReadAllLines(Path.Combine(Root.Value, dockerfile))
            .Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToList();
        var images = lines.Where(l => l.StartsWith("FROM ", StringComparison.OrdinalIgnoreCase))
            .Select(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]).ToList();
        Assert.True(images.Count >= 2, $"{dockerfile} must be multi-stage");
        Assert.Equal("mcr.microsoft.com/dotnet/sdk:10.0", images[0]);
        Assert.Contains(images[^1], new[] { "mcr.microsoft.com/dotnet/runtime:10.0", "mcr.microsoft.com/dotnet/aspnet:10.0" });

        var publish = Assert.Single(lines, l => l.Contains("dotnet publish", StringComparison.Ordinal));
        Assert.Contains(project, publish);
        Assert.Contains("-c Release", publish);
        Assert.True(File.Exists(Path.Combine(Root.Value, project)), $"{project} does not exist");

        // Everything the build copies from the repository root exists (the sql/ scripts are embedded resources).
        var copied = lines.Where(l => l.StartsWith("COPY ", StringComparison.OrdinalIgnoreCase) && !l.Contains("--from", StringComparison.Ordinal))
            .SelectMany(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..^1]).ToList();
        foreach (var needed in new[] { "NuGet.config", "global.json", "Directory.Build.props", "Directory.Packages.props", "sql/", "src/" })
        {
            Assert.Contains(needed, copied);
        }

        foreach (var path in copied)
        {
            var full = Path.Combine(Root.Value, path);
            Assert.True(File.Exists(full) || Directory.Exists(full), $"{dockerfile} copies {path}, which does not exist");
        }

        var dockerignore = File.ReadAllLines(Path.Combine(Root.Value, ".dockerignore")).Select(l => l.Trim()).ToList();
        foreach (var needed in new[] { "NuGet.config", "global.json", "Directory.Build.props", "Directory.Packages.props", "sql/", "src/", "sql", "src" })
        {
            Assert.DoesNotContain(needed, dockerignore);
        }
    }

    // ---- helpers ----

    private static Dictionary<string, Dictionary<string, object?>> Services() =>
        Map(Compose.Value["services"]).ToDictionary(x => x.Key, x => Map(x.Value));

    private static List<KeyValuePair<string, Dictionary<string, object?>>> SiloServices() =>
        Services().Where(x => x.Key.StartsWith("silo", StringComparison.Ordinal)).ToList();

    /// <summary>A service's environment in either compose form (mapping or KEY=value list).</summary>
    private static Dictionary<string, string> Environment(Dictionary<string, object?> service)
    {
        if (!service.TryGetValue("environment", out var environment) || environment is null)
        {
            return new Dictionary<string, string>();
        }

        if (environment is System.Collections.IDictionary)
        {
            return Map(environment).ToDictionary(x => x.Key, x => x.Value?.ToString() ?? "");
        }

        return Strings(environment).Select(e => e.Split('=', 2)).ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "");
    }

    /// <summary>Compose interpolation with the defaults (<c>${VAR:-default}</c>, <c>${VAR}</c>), as with an empty .env.</summary>
    private static string Resolve(string value) =>
        Regex.Replace(value, @"\$\{(?<name>[A-Za-z_][A-Za-z0-9_]*)(:?-(?<default>[^}]*))?\}", m => m.Groups["default"].Value);

    private static Dictionary<string, object?> Map(object? node)
    {
        if (node is not System.Collections.IDictionary map)
        {
            throw new InvalidOperationException($"expected a mapping, found {node?.GetType().Name ?? "nothing"}");
        }

        var result = new Dictionary<string, object?>(StringComparer.Ordinal);
        var entries = map.GetEnumerator();
        while (entries.MoveNext())
        {
            result[entries.Key.ToString()!] = entries.Value;
        }

        return result;
    }

    private static string? Scalar(Dictionary<string, object?> map, string key) =>
        map.TryGetValue(key, out var value) ? value?.ToString() : null;

    /// <summary>A list of strings, or a single string (compose's shell form).</summary>
    private static List<string> Strings(object? node) => node switch
    {
        string s => [s],
        IEnumerable<object?> list => list.Select(x => x?.ToString() ?? "").ToList(),
        _ => [],
    };

    private static Dictionary<string, object?> LoadCompose()
    {
        using var reader = new StreamReader(Path.Combine(Root.Value, "docker-compose.yml"));
        // MergingParser resolves the anchors and "<<:" merge keys the file shares between silos.
        var parser = new MergingParser(new Parser(reader));
        var document = new DeserializerBuilder().Build().Deserialize<Dictionary<object, object?>>(parser);
        return Map(document);
    }

    private static string FindRepositoryRoot()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "OrleansTwoPC.sln")))
            {
                return directory.FullName;
            }
        }

        throw new InvalidOperationException($"OrleansTwoPC.sln not found above {AppContext.BaseDirectory}");
    }
}
