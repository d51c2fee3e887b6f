using System.Collections.Concurrent;
using System.Diagnostics;

namespace OrleansTwoPC.Cluster.Tests.Nemesis;

/// <summary>
/// A private network on this machine for fault tests: a bridge in this (root) namespace holding the gateway
/// address <c>10.213.N.1</c>, where PostgreSQL and the test's client live, and one network namespace per host
/// (<c>10.213.N.2</c>, <c>.3</c>, …) joined to it by a veth pair. Faults are iptables rules inside a host's
/// namespace, so each cut is exactly the traffic named (one direction, one peer, or PostgreSQL only).
/// Everything is named after this process and removed on dispose, and at process exit whatever happened.
/// Needs root, <c>ip</c> and <c>iptables</c>.
/// </summary>
public sealed class NetworkLab : IDisposable
{
    private static readonly ConcurrentDictionary<NetworkLab, bool> Open = new();

    static NetworkLab()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            foreach (var lab in Open.Keys) lab.Dispose();
        };
    }

    private readonly List<string> _namespaces = new();
    // Rules added in this (root) namespace, each removed by its own delete command.
    private readonly List<string[]> _rootRules = new();
    private bool _disposed;

    private NetworkLab(string bridge, int subnet)
    {
        Bridge = bridge;
        Subnet = subnet;
    }

    public string Bridge { get; }
    public int Subnet { get; }

    /// <summary>The bridge's address in the root namespace: where PostgreSQL listens for the hosts.</summary>
    public string GatewayAddress => $"10.213.{Subnet}.1";

    public string CidrBlock => $"10.213.{Subnet}.0/24";

    public IReadOnlyList<string> Namespaces => _namespaces;

    public static string AddressOf(int subnet, int host) => $"10.213.{subnet}.{host + 2}";

    public string AddressOf(int host) => AddressOf(Subnet, host);

    /// <summary>Whether this machine can build a lab: root, and the ip and iptables commands.</summary>
    public static string? MissingPrerequisite()
    {
        if (Environment.UserName != "root") return "network namespaces need root";
        foreach (var tool in new[] { "ip", "iptables" })
            if (!new[] { "/usr/sbin", "/sbin", "/usr/bin", "/bin" }.Any(d => File.Exists(Path.Combine(d, tool))))
                return $"'{tool}' is not installed (Debian package {(tool == "ip" ? "iproute2" : "iptables")})";
        return null;
    }

    private static int _labs;

    public static NetworkLab Create(int hosts)
    {
        // A subnet and names of this process's own, so concurrent runs never share a lab; and of this lab's own
        // (a letter per lab of the process): the kernel removes a deleted namespace's veth pair asynchronously,
        // so on a busy machine the previous lab's interfaces may still exist when the next lab starts.
        var id = $"{Environment.ProcessId % 100_000}{(char)('a' + Interlocked.Increment(ref _labs) % 26)}";
        var subnet = 20 + Environment.ProcessId % 200;
        var lab = new NetworkLab($"tpn{id}", subnet);
        Open[lab] = true;
        try
        {
            Run("ip", "link", "add", lab.Bridge, "type", "bridge");
            Run("ip", "addr", "add", $"{lab.GatewayAddress}/24", "dev", lab.Bridge);
            Run("ip", "link", "set", lab.Bridge, "up");
            for (var host = 0; host < hosts; host++)
            {
                var ns = $"tpn{id}-{host}";
                Run("ip", "netns", "add", ns);
                lab._namespaces.Add(ns);
                var outside = $"tpn{id}o{host}";
                Run("ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns);
                Run("ip", "link", "set", outside, "master", lab.Bridge, "up");
                Run("ip", "-n", ns, "addr", "add", $"{lab.AddressOf(host)}/24", "dev", "eth0");
                Run("ip", "-n", ns, "link", "set", "eth0", "up");
                Run("ip", "-n", ns, "link", "set", "lo", "up");
            }
            return lab;
        }
        catch
        {
            lab.Dispose();
            throw;
        }
    }

    /// <summary>Drops what host <paramref name="host"/> sends to <paramref name="address"/> (and, both ways, what it receives from it).</summary>
    public void Cut(int host, string address, bool bothWays = true)
    {
        Run("ip", "netns", "exec", _namespaces[host], "iptables", "-A", "OUTPUT", "-d", address, "-j", "DROP");
        if (bothWays) Run("ip", "netns", "exec", _namespaces[host], "iptables", "-A", "INPUT", "-s", address, "-j", "DROP");
    }

    /// <summary>Drops TCP traffic between host <paramref name="host"/> and <paramref name="address"/>:<paramref name="port"/> only.</summary>
    public void CutPort(int host, string address, int port)
    {
        var p = port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        Run("ip", "netns", "exec", _namespaces[host], "iptables", "-A", "OUTPUT", "-d", address, "-p", "tcp", "--dport", p, "-j", "DROP");
        Run("ip", "netns", "exec", _namespaces[host], "iptables", "-A", "INPUT", "-s", address, "-p", "tcp", "--sport", p, "-j", "DROP");
    }

    /// <summary>
    /// Drops what this (root) namespace, where the test's client runs, sends to host <paramref name="host"/>'s
    /// <paramref name="port"/>: the client is cut from that gateway. Only the lab's own address is named.
    /// </summary>
    public void CutClient(int host, int port)
    {
        string[] rule = ["OUTPUT", "-d", AddressOf(host), "-p", "tcp", "--dport", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-j", "DROP"];
        Run(["iptables", "-A", .. rule]);
        lock (_rootRules) _rootRules.Add(rule);
    }

    /// <summary>Removes the client cuts made by <see cref="CutClient"/>.</summary>
    public void HealClient()
    {
        lock (_rootRules)
        {
            foreach (var rule in _rootRules) TryRun(["iptables", "-D", .. rule]);
            _rootRules.Clear();
        }
    }

    /// <summary>Removes every rule of host <paramref name="host"/>.</summary>
    public void Heal(int host)
    {
        Run("ip", "netns", "exec", _namespaces[host], "iptables", "-F", "OUTPUT");
        Run("ip", "netns", "exec", _namespaces[host], "iptables", "-F", "INPUT");
    }

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        HealClient();
        foreach (var ns in _namespaces) TryRun("ip", "netns", "del", ns);
        TryRun("ip", "link", "del", Bridge);
        Open.TryRemove(this, out _);
    }

    private static void Run(params string[] arguments)
    {
        var (code, error) = Execute(arguments);
        if (code != 0) throw new InvalidOperationException($"'{string.Join(' ', arguments)}' failed ({code}): {error}");
    }

    private static void TryRun(params string[] arguments) => Execute(arguments);

    private static (int Code, string Error) Execute(string[] arguments)
    {
        var start = new ProcessStartInfo(arguments[0]) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (var argument in arguments.Skip(1)) start.ArgumentList.Add(argument);
        using var process = Process.Start(start)!;
        var error = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, error.Trim());
    }
}
