using System.Net;
using System.Text.RegularExpressions;
using Npgsql;
using YamlDotNet.Core;
using YamlDotNet.Serialization;

namespace OrleansTwoPC.Storage.Tests;

/// <summary>
/// Keeps docker-compose.yml and the Dockerfiles in step with what the hosts really read: service names,
/// Dockerfile paths, configuration keys (README's configuration reference), the PostgreSQL host, the
/// cluster identity shared by silos and client, advertised addresses, the .NET image tags, and least
/// privilege (a provision step creates a login per service; each silo holds only its own).
/// No Docker engine is needed; CI additionally runs <c>docker-compose config -q</c>.
/// </summary>
public sealed class DeploymentFilesTests
{
    private const string PostgresService = "postgres";
    private const string ClientService = "client";
    private const string ProvisionService = "provision";
    private const string AdminPasswordVariable = "POSTGRES_PASSWORD";

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
        "TwoPC__ProvisionDatabases",
    ];

    private static readonly string[] SiloKeyPrefixes =
    [
        "TwoPC__Protocol__",
        "TwoPC__Recovery__",
        "TwoPC__Logging__",
        "TwoPC__Health__",
        "TwoPC__Tls__",
        "TwoPC__Postgres__",
        "TwoPC__Logins__",
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

    private static readonly string[] ClientKeyPrefixes = ["TwoPC__Client__", "TwoPC__Tls__", "TwoPC__Postgres__"];

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

            foreach (var required in new[] { "TwoPC__DatabasePrefix", "TwoPC__ClusterId", "TwoPC__Health__Port" })
            {
                Assert.True(environment.ContainsKey(required), $"{name} must set {required}");
            }

            // The provision step creates the databases and schema; a silo's own login may not.
            Assert.True(environment.TryGetValue("TwoPC__ProvisionDatabases", out var provision) && Resolve(provision) == "false",
                $"{name} must run with TwoPC__ProvisionDatabases=false");

            foreach (var port in new[] { "TwoPC__SiloPort", "TwoPC__GatewayPort", "TwoPC__Health__Port" })
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
        foreach (var (name, service) in ConnectingServices())
        {
            var connectionStrings = ConnectionStrings(service);
            Assert.True(connectionStrings.Count > 0, $"{name} has no connection string");
            foreach (var (key, connectionString) in connectionStrings)
            {
                var builder = new NpgsqlConnectionStringBuilder(connectionString);
                Assert.True(builder.Host == PostgresService && builder.Port == 5432, $"{name}: {key} must point at {PostgresService}:5432");
            }
        }

        // The admin connection: the provision step's (it creates the logins) and tpc's (tpc check reads all four databases).
        var adminPassword = Resolve(Scalar(Map(Map(Services()[PostgresService])["environment"]), AdminPasswordVariable)!);
        foreach (var name in new[] { ProvisionService, ClientService })
        {
            var builder = new NpgsqlConnectionStringBuilder(Assert.Single(ConnectionStrings(Services()[name])).Value);
            Assert.Equal("postgres", builder.Username);
            Assert.Equal(adminPassword, builder.Password);
        }
    }

    [Fact]
    public void A_one_shot_provision_step_creates_a_login_per_service_before_any_silo_starts()
    {
        var provision = Services()[ProvisionService];
        Assert.Equal("src/OrleansTwoPC.Silo/Dockerfile", Scalar(Map(provision["build"]), "dockerfile"));
        Assert.Equal(["provision"], Strings(provision["command"]));
        Assert.Equal(["dotnet", "OrleansTwoPC.Silo.dll"], Strings(provision["entrypoint"]));
        Assert.Equal("no", Scalar(provision, "restart"));
        Assert.Equal("service_healthy", Scalar(Map(Map(provision["depends_on"])[PostgresService]), "condition"));

        var environment = Environment(provision);
        foreach (var key in environment.Keys)
        {
            Assert.True(SiloExactKeys.Contains(key, StringComparer.Ordinal) || SiloKeyPrefixes.Any(p => key.StartsWith(p, StringComparison.Ordinal)),
                $"provision: '{key}' is not a configuration key the silo executable reads");
        }

        // Every service's login, its password from a required variable of its own.
        foreach (var (service, _) in ServiceLogins.Services)
        {
            var key = $"TwoPC__Logins__{service}__Password";
            Assert.True(environment.TryGetValue(key, out var password), $"provision must set {key}");
            Assert.Matches($@"^\$\{{{PasswordVariable(service)}:\?[^}}]+\}}$", password);
        }

        foreach (var (name, silo) in SiloServices())
        {
            Assert.Equal(Resolve(Environment(silo)["TwoPC__DatabasePrefix"]), Resolve(environment["TwoPC__DatabasePrefix"]));
            var dependsOn = Map(silo["depends_on"]);
            Assert.True(dependsOn.ContainsKey(ProvisionService), $"{name} must wait for {ProvisionService}");
            Assert.Equal("service_completed_successfully", Scalar(Map(dependsOn[ProvisionService]), "condition"));
        }
    }

    [Fact]
    public void Each_silo_holds_only_its_own_services_login_and_no_admin_password()
    {
        var passwords = ServiceLogins.Services.Select(s => PasswordVariable(s.Service)).Append(AdminPasswordVariable)
            .ToDictionary(v => v, v => Resolve($"${{{v}:?unset}}"));
        // Distinct example values, or a silo holding another's password could not be told from its own.
        Assert.Equal(passwords.Count, passwords.Values.Distinct().Count());

        foreach (var (name, silo) in SiloServices())
        {
            var environment = Environment(silo);
            var role = Assert.Single(Resolve(environment["TwoPC__Roles"]).Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries));
            var prefix = Resolve(environment["TwoPC__DatabasePrefix"]);
            var own = PasswordVariable(role);

            // Exactly the databases a silo of its role opens (its own and the coordinator's), no admin connection.
            var connectionStrings = ConnectionStrings(silo);
            var needed = ServiceLogins.DatabasesFor([role]).Select(d => $"ConnectionStrings__{d}").Order().ToList();
            Assert.Equal(needed, connectionStrings.Keys.Order().ToList());
            var databases = PostgresTopology.DeriveDatabases("Host=postgres", prefix);
            foreach (var (key, connectionString) in connectionStrings)
            {
                var builder = new NpgsqlConnectionStringBuilder(connectionString);
                Assert.Equal(PostgresConnectionStrings.DatabaseOf(databases[key["ConnectionStrings__".Length..]]), builder.Database);
                Assert.True(builder.Username == $"{prefix}_{role}", $"{name}: {key} must log in as {prefix}_{role} (provision's login for {role}), not {builder.Username}");
                Assert.True(builder.Password == passwords[own], $"{name}: {key} must take its password from {own}");
                Assert.Contains($";Password=${{{own}:?", Environment(silo)[key]);
            }

            // Neither another service's password nor the admin's, in any form.
            foreach (var (variable, value) in passwords.Where(p => p.Key != own))
            {
                foreach (var (key, raw) in environment)
                {
                    Assert.False(raw.Contains($"${{{variable}", StringComparison.Ordinal) || Resolve(raw).Contains(value, StringComparison.Ordinal),
                        $"{name}: {key} holds {variable}; a silo may hold only its own service's credentials");
                }
            }
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
    public void Silos_advertise_the_address_their_container_got_and_no_subnet_is_fixed()
    {
        foreach (var (name, silo) in SiloServices())
        {
            // ConfigureEndpoints binds to the advertised address, so it must be the container's own: looked up at start.
            var entrypoint = Strings(silo["entrypoint"]);
            Assert.Equal(["/bin/sh", "-c"], entrypoint.Take(2));
            Assert.Contains("export TwoPC__AdvertisedIp=\"$(hostname -i | cut -d ' ' -f 1)\"", Unescape(entrypoint[2]));
            Assert.Contains("exec dotnet OrleansTwoPC.Silo.dll \"$@\"", Unescape(entrypoint[2]));
            Assert.False(Environment(silo).ContainsKey("TwoPC__AdvertisedIp"), $"{name}: a fixed TwoPC__AdvertisedIp would need a fixed address");
            var networks = silo.TryGetValue("networks", out var n) ? n : null;
            if (networks is System.Collections.IDictionary map)
            {
                Assert.DoesNotContain(Map(map).Values.Where(v => v is not null), v => Map(v).ContainsKey("ipv4_address"));
            }
        }

        // A fixed subnet can clash with a network that already exists on the host.
        foreach (var (name, network) in Compose.Value.TryGetValue("networks", out var networks) && networks is not null ? Map(networks) : [])
        {
            Assert.True(network is null || !Map(network).ContainsKey("ipam"), $"network {name} must not fix a subnet");
        }
    }

    [Fact]
    public void Silos_are_healthy_when_their_readiness_probe_answers_and_the_client_waits_for_it()
    {
        foreach (var (name, silo) in SiloServices())
        {
            var environment = Environment(silo);
            var port = Resolve(environment["TwoPC__Health__Port"]);
            var host = environment.TryGetValue("TwoPC__Health__Host", out var h) ? Resolve(h) : "127.0.0.1";
            Assert.True(IPAddress.TryParse(host, out var address) && address.Equals(IPAddress.Any),
                $"{name}: the probes listen on all interfaces (TwoPC__Health__Host=0.0.0.0), as a kubelet needs");
            var test = Unescape(string.Join(" ", Strings(Map(silo["healthcheck"])["test"])));
            Assert.Contains($"/dev/tcp/127.0.0.1/{port}", test);
            Assert.Contains("GET /health/ready HTTP/1.0", test);
            // RequireHost on the probes' port matches the Host header: it must carry the port.
            Assert.Contains($"Host: 127.0.0.1:{port}", test);
            Assert.Contains("' 200 '", test);
        }

        var dependsOn = Map(Map(Services()[ClientService])["depends_on"]);
        foreach (var (name, _) in SiloServices())
        {
            Assert.True(dependsOn.ContainsKey(name), $"the client must wait for {name}");
            Assert.Equal("service_healthy", Scalar(Map(dependsOn[name]), "condition"));
        }
    }

    [Fact]
    public void Secrets_come_only_from_the_environment_and_env_example_documents_every_variable()
    {
        var compose = File.ReadAllText(Path.Combine(Root.Value, "docker-compose.yml"));
        var variables = Regex.Matches(compose, @"\$\{(?<name>[A-Za-z_][A-Za-z0-9_]*)").Select(m => m.Groups["name"].Value).ToHashSet();
        var example = EnvExample.Value;
        foreach (var variable in variables)
        {
            Assert.True(example.ContainsKey(variable), $".env.example does not document {variable}, which docker-compose.yml uses");
        }

        // No default for a password: compose refuses to start without one from .env or the environment.
        Assert.Matches(@"\$\{POSTGRES_PASSWORD:\?[^}]+\}", Scalar(Map(Map(Services()[PostgresService])["environment"]), "POSTGRES_PASSWORD"));
        foreach (var (name, service) in ConnectingServices())
        {
            foreach (var (key, _) in ConnectionStrings(service))
            {
                Assert.Matches(@";Password=\$\{[A-Z_]+_PASSWORD:\?[^}]+\};", Environment(service)[key]);
            }
        }

        var ignored = File.ReadAllLines(Path.Combine(Root.Value, ".gitignore")).Select(l => l.Trim()).ToList();
        Assert.Contains(".env", ignored);
        Assert.Contains(".env", File.ReadAllLines(Path.Combine(Root.Value, ".dockerignore")).Select(l => l.Trim()));
    }

    [Fact]
    public void Tls_override_mounts_each_service_its_own_certificate_and_key_from_outside_the_repository()
    {
        var overrides = Map(LoadYaml("docker-compose.tls.yml")["services"]);
        var expected = SiloServices().Select(s => s.Key).Append(ClientService).Order().ToList();
        Assert.Equal(expected, overrides.Keys.Order().ToList());
        foreach (var (name, node) in overrides)
        {
            var service = Map(node);
            var environment = Environment(service);
            Assert.Equal(["TwoPC__CaPath", "TwoPC__CertificatePath", "TwoPC__KeyPath"],
                environment.Keys.Select(k => k.Replace("Tls__", "", StringComparison.Ordinal)).Order().ToList());

            // Host file -> container path, read-only; the host files are this service's own and the CA's certificate.
            var mounts = Strings(service["volumes"]).Select(v => Resolve(v).Split(':')).ToDictionary(p => p[1], p => (Source: p[0], Mode: p[2]));
            foreach (var key in environment.Keys)
            {
                Assert.True(mounts.TryGetValue(environment[key], out var mount), $"{name}: {key}={environment[key]} is not a mounted file");
                Assert.Equal("ro", mount.Mode);
                var file = Path.GetFileName(mount.Source);
                Assert.Equal(key.EndsWith("CaPath", StringComparison.Ordinal) ? "cluster-ca.crt"
                    : name + (key.EndsWith("KeyPath", StringComparison.Ordinal) ? ".key" : ".crt"), file);
                Assert.StartsWith("./secrets/", mount.Source, StringComparison.Ordinal);
            }

            Assert.Equal(3, mounts.Count);
        }

        // Where the certificates live by default is neither committed nor sent to an image build.
        Assert.Contains("secrets/", File.ReadAllLines(Path.Combine(Root.Value, ".gitignore")).Select(l => l.Trim()));
        Assert.Contains("secrets/", File.ReadAllLines(Path.Combine(Root.Value, ".dockerignore")).Select(l => l.Trim()));
    }

    [Fact]
    public void Max_connections_fits_every_silo_and_two_tpc_processes_pooling_on_four_databases()
    {
        var command = Strings(Map(Services()[PostgresService])["command"]);
        var setting = Resolve(Assert.Single(command, c => c.StartsWith("max_connections=", StringComparison.Ordinal)));
        var maxConnections = int.Parse(setting["max_connections=".Length..]);
        var pools = SiloServices().Append(new(ClientService, Map(Services()[ClientService])))
            .SelectMany(s => ConnectionStrings(s.Value).Values)
            .Select(c => new NpgsqlConnectionStringBuilder(c).MaxPoolSize)
            .ToList();
        var pool = pools.Max();
        // Without a cap, each process would pool PostgresConnectionStrings.DefaultMaximumPoolSize per database.
        Assert.True(pool < PostgresConnectionStrings.DefaultMaximumPoolSize, "compose caps the pools (Maximum Pool Size)");
        var needed = (SiloServices().Count + 2) * ServiceDatabases.Names.Count * pool + 20;
        Assert.True(maxConnections >= needed, $"max_connections={maxConnections} is below (silos + 2 tpc) x 4 databases x pool {pool} + 20 = {needed}");
    }

    [Fact]
    public void Connection_strings_turn_gss_encryption_off()
    {
        // The .NET images carry no Kerberos library; Npgsql's default would look for it on every new connection.
        foreach (var (name, service) in ConnectingServices())
        {
            foreach (var (key, connectionString) in ConnectionStrings(service))
            {
                var builder = new NpgsqlConnectionStringBuilder(connectionString);
                Assert.True(builder.GssEncryptionMode == GssEncryptionMode.Disable, $"{name}: {key} needs GSS Encryption Mode=Disable");
            }
        }
    }

    [Fact]
    public void Readme_compose_sequence_is_what_the_smoke_test_runs()
    {
        var readme = File.ReadAllText(Path.Combine(Root.Value, "README.md"));
        var section = readme[readme.IndexOf("## Deploying with Docker Compose", StringComparison.Ordinal)..];
        section = section[..section.IndexOf("\n## ", 5, StringComparison.Ordinal)];
        var commands = section.Split('\n').Select(l => l.Trim()).Where(l => l.StartsWith("docker compose ", StringComparison.Ordinal)).ToList();
        Assert.True(commands.Count >= 8, "README's compose section lists the whole sequence");
        var smoke = File.ReadAllText(Path.Combine(Root.Value, "deploy", "compose-smoke-test.sh"));
        foreach (var command in commands)
        {
            // The script's compose() is `docker compose`, or docker-compose where only that is installed.
            var asRun = command["docker ".Length..];
            Assert.True(smoke.Contains(asRun, StringComparison.Ordinal), $"deploy/compose-smoke-test.sh does not run README's `{command}`");
        }

        foreach (var step in new[] { "build", "up -d", "exec -T postgres psql", "run --rm client seed", "run --rm client order", "stop silo-payment",
                     "run --rm --no-deps client order", "run --rm --no-deps client stock", "start silo-payment", "recover --all", "run --rm client check", "down -v" })
        {
            Assert.Contains(commands, c => c.Contains(step, StringComparison.Ordinal));
        }
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
        // The silo runs an ASP.NET Core host (dashboard, console, probes): on the plain runtime it exits with code 150.
        Assert.Equal("mcr.microsoft.com/dotnet/aspnet:10.0", images[^1]);

        var publish = Assert.Single(lines, l => l.Contains("dotnet publish", StringComparison.Ordinal));
        Assert.Contains(project, publish);
        Assert.Contains("-c Release", publish);

        // A restore layer: the project files of the whole reference closure, restored before the sources are copied.
        var restore = Assert.Single(lines, l => l.StartsWith("RUN dotnet restore", StringComparison.Ordinal));
        Assert.Contains(project, restore);
        Assert.Contains("--no-restore", publish);
        var restoreAt = lines.IndexOf(restore);
        Assert.True(restoreAt < lines.IndexOf("COPY src/ src/"), "restore runs before the sources are copied");
        var copiedBeforeRestore = lines.Take(restoreAt).Where(l => l.StartsWith("COPY ", StringComparison.Ordinal))
            .SelectMany(l => l.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1..^1]).ToList();
        foreach (var needed in ProjectClosure(project).Append("Directory.Packages.props").Append("NuGet.config"))
        {
            Assert.Contains(needed, copiedBeforeRestore);
        }

        Assert.DoesNotContain(copiedBeforeRestore, c => c.EndsWith('/'));
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

    private static readonly Lazy<Dictionary<string, string>> EnvExample = new(() =>
        File.ReadAllLines(Path.Combine(Root.Value, ".env.example")).Select(l => l.Trim())
            .Where(l => l.Length > 0 && !l.StartsWith('#'))
            .Select(l => l.Split('=', 2))
            .ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : ""));

    /// <summary>The project file and every project it references, transitively, as repository-relative paths.</summary>
    private static List<string> ProjectClosure(string project)
    {
        var found = new List<string>();
        var pending = new Stack<string>([project]);
        while (pending.Count > 0)
        {
            var next = pending.Pop();
            if (found.Contains(next)) continue;
            found.Add(next);
            var directory = Path.GetDirectoryName(next)!;
            foreach (Match reference in Regex.Matches(File.ReadAllText(Path.Combine(Root.Value, next)), @"ProjectReference Include=""(?<path>[^""]+)"""))
            {
                var full = Path.GetFullPath(Path.Combine(Root.Value, directory, reference.Groups["path"].Value.Replace('\\', '/')));
                pending.Push(Path.GetRelativePath(Root.Value, full).Replace('\\', '/'));
            }
        }

        return found;
    }

    /// <summary>Compose's <c>$$</c> is a literal <c>$</c> in the container.</summary>
    private static string Unescape(string value) => value.Replace("$$", "$");

    private static Dictionary<string, Dictionary<string, object?>> Services() =>
        Map(Compose.Value["services"]).ToDictionary(x => x.Key, x => Map(x.Value));

    private static List<KeyValuePair<string, Dictionary<string, object?>>> SiloServices() =>
        Services().Where(x => x.Key.StartsWith("silo", StringComparison.Ordinal)).ToList();

    /// <summary>Every service that logs in to PostgreSQL: the silos, the provision step and the client.</summary>
    private static List<KeyValuePair<string, Dictionary<string, object?>>> ConnectingServices() =>
        SiloServices().Append(new(ProvisionService, Services()[ProvisionService])).Append(new(ClientService, Services()[ClientService])).ToList();

    /// <summary>A service's <c>ConnectionStrings__*</c>, resolved.</summary>
    private static Dictionary<string, string> ConnectionStrings(Dictionary<string, object?> service) =>
        Environment(service).Where(e => e.Key.StartsWith("ConnectionStrings__", StringComparison.Ordinal)).ToDictionary(e => e.Key, e => Resolve(e.Value));

    /// <summary>The .env variable holding a service login's password (TWOPC_PAYMENT_DB_PASSWORD).</summary>
    private static string PasswordVariable(string service) => $"TWOPC_{service.ToUpperInvariant()}_DB_PASSWORD";

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

    /// <summary>
    /// Compose interpolation (<c>${VAR:-default}</c>, <c>${VAR:?error}</c>, <c>${VAR}</c>) as with .env.example as the .env;
    /// a required variable it does not set fails as compose would.
    /// </summary>
    private static string Resolve(string value) =>
        Regex.Replace(value, @"\$\{(?<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?<op>:?[-?])(?<arg>[^}]*))?\}", m =>
            EnvExample.Value.TryGetValue(m.Groups["name"].Value, out var set) && set.Length > 0 ? set
            : m.Groups["op"].Value.EndsWith('?') ? throw new InvalidOperationException($"{m.Groups["name"].Value}: {m.Groups["arg"].Value}")
            : m.Groups["arg"].Value);

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

    private static Dictionary<string, object?> LoadCompose() => LoadYaml("docker-compose.yml");

    private static Dictionary<string, object?> LoadYaml(string file)
    {
        using var reader = new StreamReader(Path.Combine(Root.Value, file));
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
