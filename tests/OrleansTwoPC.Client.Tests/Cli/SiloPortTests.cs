using System.Net;
using System.Net.Sockets;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Silo.Demo;
using OrleansTwoPC.Storage;
using Xunit.Abstractions;

namespace OrleansTwoPC.Client.Tests.Cli;

/// <summary>
/// A silo process whose silo, gateway or dashboard port is taken (by a plain listener on loopback, on the
/// IPv4 wildcard or dual-stack on the IPv6 wildcard, or by a running silo of another cluster) stops at once
/// with one clear line and a non-zero exit.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class SiloPortTests(PostgresFixture postgres, ITestOutputHelper log)
{
    public enum Listener { Silo, Gateway, Dashboard }

    public enum Holder { Loopback, AnyIPv4, DualStackIPv6 }

    public static readonly TheoryData<Listener, Holder> Cases = new()
    {
        { Listener.Silo, Holder.Loopback }, { Listener.Silo, Holder.AnyIPv4 }, { Listener.Silo, Holder.DualStackIPv6 },
        { Listener.Gateway, Holder.Loopback }, { Listener.Gateway, Holder.AnyIPv4 }, { Listener.Gateway, Holder.DualStackIPv6 },
        { Listener.Dashboard, Holder.Loopback }, { Listener.Dashboard, Holder.AnyIPv4 }, { Listener.Dashboard, Holder.DualStackIPv6 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task A_port_held_by_a_plain_listener_stops_the_silo_with_one_line(Listener listener, Holder holder)
    {
        using var held = Hold(holder);
        var port = ((IPEndPoint)held.LocalEndpoint).Port;

        var (exitCode, lines) = await RunRefusedSiloAsync(listener, port);

        AssertOneClearLine(exitCode, lines, listener, port);
    }

    [Fact]
    public async Task A_port_of_a_running_silo_of_another_cluster_stops_the_second_silo_with_one_line()
    {
        await using var first = await SiloServer.StartAsync(postgres.AdminConnectionString, "taken", TimeSpan.FromSeconds(60));
        foreach (var (listener, port) in new[]
                 {
                     (Listener.Silo, first.SiloPort), (Listener.Gateway, first.GatewayPort),
                     (Listener.Dashboard, first.SiloPort), (Listener.Silo, first.GatewayPort),
                 })
        {
            var (exitCode, lines) = await RunRefusedSiloAsync(listener, port);

            AssertOneClearLine(exitCode, lines, listener, port);
        }

        Assert.False(first.HasExited, first.Output);
    }

    [Fact]
    public async Task Two_listeners_of_one_silo_on_the_same_port_stop_it_with_one_line()
    {
        var port = ChildSilo.FreePort();

        var (exitCode, lines) = await RunRefusedSiloAsync(Listener.Gateway, port, new() { ["TwoPC:SiloPort"] = port.ToString() });

        Assert.NotEqual(0, exitCode);
        Assert.Equal([$"[stderr] error: TwoPC:SiloPort and TwoPC:GatewayPort are both {port}; each listener needs its own port"], lines);
    }

    private static void AssertOneClearLine(int exitCode, IReadOnlyList<string> lines, Listener listener, int port)
    {
        Assert.NotEqual(0, exitCode);
        var line = Assert.Single(lines);
        var (name, setting) = listener switch
        {
            Listener.Silo => ("silo", "TwoPC:SiloPort"),
            Listener.Gateway => ("gateway", "TwoPC:GatewayPort"),
            _ => ("dashboard", "TwoPC:Dashboard:Port"),
        };
        Assert.Equal($"[stderr] error: {name} port {port} on 127.0.0.1 is already in use by another process ({setting}); stop that process or choose another port", line);
    }

    /// <summary>Starts a silo with <paramref name="listener"/> on <paramref name="port"/> (its own cluster and
    /// databases) and waits for it to give up; its output lines, without the launcher's notes.</summary>
    private async Task<(int ExitCode, IReadOnlyList<string> Lines)> RunRefusedSiloAsync(Listener listener, int port, Dictionary<string, string>? extra = null)
    {
        var settings = listener switch
        {
            Listener.Silo => new Dictionary<string, string> { ["TwoPC:SiloPort"] = port.ToString() },
            Listener.Gateway => new() { ["TwoPC:GatewayPort"] = port.ToString() },
            _ => new() { ["TwoPC:Dashboard:Enabled"] = "true", ["TwoPC:Dashboard:Port"] = port.ToString() },
        };
        foreach (var (key, value) in extra ?? []) settings[key] = value;
        var prefix = "p_" + Guid.NewGuid().ToString("N")[..12];
        await using var silo = ChildSilo.Start("refused", postgres.AdminConnectionString, prefix, "cluster-" + prefix, "OrleansTwoPC",
            PostgresTopology.DeriveDatabases(postgres.AdminConnectionString, prefix).Coordinator, settings);
        try
        {
            await silo.WaitForExitAsync(CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (TimeoutException)
        {
            Assert.Fail($"the silo with its {listener} port {port} taken is still running after 30 s:\n{string.Join('\n', silo.LastLines(50))}");
        }

        // The output is read asynchronously: let the last lines arrive.
        await Task.Delay(200);
        var lines = silo.LastLines(ChildSilo.DefaultKeptLines).Where(l => !l.StartsWith("[parent ", StringComparison.Ordinal)).ToList();
        log.WriteLine($"{listener} port {port}: exit {silo.ExitCode}\n{string.Join('\n', lines)}");
        return (silo.ExitCode, lines);
    }

    private static TcpListener Hold(Holder holder)
    {
        var listener = holder switch
        {
            Holder.Loopback => new TcpListener(IPAddress.Loopback, 0),
            Holder.AnyIPv4 => new TcpListener(IPAddress.Any, 0),
            _ => new TcpListener(IPAddress.IPv6Any, 0),
        };
        if (holder == Holder.DualStackIPv6) listener.Server.DualMode = true;
        listener.Start();
        return listener;
    }
}
