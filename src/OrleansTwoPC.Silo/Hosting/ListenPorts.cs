using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>A silo start refused before anything started; the message is the one line to show.</summary>
public sealed class SiloStartupException(string message) : Exception(message);

/// <summary>One TCP endpoint the silo process will listen on, and the setting that chose it.</summary>
/// <param name="Optional">Skipped when the address does not exist here (IPv6 loopback of <c>localhost</c>).</param>
public sealed record ListenEndpoint(string Name, string Setting, IPEndPoint EndPoint, bool Optional = false);

/// <summary>
/// The silo's listening endpoints from configuration (<c>TwoPC:AdvertisedIp</c>, <c>TwoPC:SiloPort</c>,
/// <c>TwoPC:GatewayPort</c>, the dashboard's, the admin console's), each checked with a clear error.
/// </summary>
public sealed record SiloEndpoints(IPAddress AdvertisedIp, int SiloPort, int GatewayPort, IReadOnlyList<ListenEndpoint> Listeners)
{
    public const int DefaultSiloPort = 11111;
    public const int DefaultGatewayPort = 30000;

    public static SiloEndpoints FromConfiguration(IConfiguration configuration)
    {
        var ipText = configuration["TwoPC:AdvertisedIp"];
        var ip = IPAddress.Loopback;
        if (!string.IsNullOrWhiteSpace(ipText) && !IPAddress.TryParse(ipText, out ip!))
            throw new SiloStartupException($"TwoPC:AdvertisedIp must be an IP address, not '{ipText}'");
        var siloPort = Port(configuration, "TwoPC:SiloPort", DefaultSiloPort);
        var gatewayPort = Port(configuration, "TwoPC:GatewayPort", DefaultGatewayPort);

        // Orleans listens on the advertised address itself; Kestrel on the dashboard's host (both loopbacks for localhost).
        var listeners = new List<ListenEndpoint>
        {
            new("silo", "TwoPC:SiloPort", new IPEndPoint(ip, siloPort)),
            new("gateway", "TwoPC:GatewayPort", new IPEndPoint(ip, gatewayPort)),
        };
        foreach (var (name, setting, url) in new[]
                 {
                     ("dashboard", $"{SiloHostBuilder.DashboardSection}:Port", SiloHostBuilder.DashboardUrl(configuration)),
                     ("admin", $"{Admin.AdminSettings.Section}:Port", Admin.AdminSettings.FromConfiguration(configuration)?.Url),
                     ("health", $"{HealthSettings.Section}:Port", HealthSettings.FromConfiguration(configuration)?.Url),
                 })
        {
            if (url is null) continue;
            var uri = new Uri(url);
            if (uri.IsLoopback && !IPAddress.TryParse(uri.DnsSafeHost, out _))
            {
                listeners.Add(new(name, setting, new IPEndPoint(IPAddress.Loopback, uri.Port)));
                listeners.Add(new(name, setting, new IPEndPoint(IPAddress.IPv6Loopback, uri.Port), Optional: true));
            }
            else
            {
                listeners.Add(new(name, setting, new IPEndPoint(IPAddress.Parse(uri.DnsSafeHost), uri.Port)));
            }
        }

        var clash = listeners.GroupBy(l => l.EndPoint.Port).FirstOrDefault(g => g.Select(l => l.Name).Distinct().Count() > 1);
        if (clash is not null)
        {
            var settings = clash.Select(l => l.Setting).Distinct().ToList();
            throw new SiloStartupException($"{string.Join(" and ", settings)} are both {clash.Key}; each listener needs its own port");
        }

        return new SiloEndpoints(ip, siloPort, gatewayPort, listeners);
    }

    private static int Port(IConfiguration configuration, string key, int fallback)
    {
        var text = configuration[key];
        if (string.IsNullOrWhiteSpace(text)) return fallback;
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var port) && port is >= 1 and <= 65535
            ? port
            : throw new SiloStartupException($"{key} must be a TCP port (1-65535), not '{text}'");
    }
}

/// <summary>
/// Claims the silo's listening ports before anything starts, so a taken port stops the silo with one clear
/// line. Orleans binds its listeners with <see cref="SocketOptionName.ReuseAddress"/>, which .NET on Unix
/// implements as SO_REUSEPORT: a second silo of the same user (of any cluster) would then share the port with
/// the first, the kernel handing each part of the other's connections, without an error. The probes here bind exclusively (no reuse option, dual-stack
/// where the real listener is), so they fail on any socket bound to a conflicting address. The silo and
/// gateway probes are held until just before Orleans binds (<see cref="Release"/>), so two silos starting
/// together cannot both pass the check; the dashboard's and the admin console's are released at once (Kestrel binds exclusively itself).
/// </summary>
public sealed class PortReservation : IDisposable
{
    private readonly List<Socket> _held;

    private PortReservation(List<Socket> held) => _held = held;

    /// <summary>Binds a probe on every endpoint; throws <see cref="SiloStartupException"/> for the first that is unavailable.</summary>
    public static PortReservation Acquire(IEnumerable<ListenEndpoint> endpoints)
    {
        var held = new List<Socket>();
        try
        {
            foreach (var endpoint in endpoints)
            {
                if (Probe(endpoint) is not { } socket) continue;
                if (endpoint.Name is "dashboard" or "admin" or "health") socket.Dispose();
                else held.Add(socket);
            }

            return new PortReservation(held);
        }
        catch
        {
            held.ForEach(s => s.Dispose());
            throw;
        }
    }

    /// <summary>Lets Orleans bind the ports (call just before it does).</summary>
    public void Release()
    {
        lock (_held)
        {
            _held.ForEach(s => s.Dispose());
            _held.Clear();
        }
    }

    public void Dispose() => Release();

    private static Socket? Probe(ListenEndpoint endpoint)
    {
        var address = endpoint.EndPoint.Address;
        var socket = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            if (address.Equals(IPAddress.IPv6Any)) socket.DualMode = true;
            socket.Bind(endpoint.EndPoint);
            return socket;
        }
        catch (SocketException ex)
        {
            socket.Dispose();
            var where = $"{endpoint.Name} port {endpoint.EndPoint.Port} on {address}";
            switch (ex.SocketErrorCode)
            {
                case SocketError.AddressNotAvailable or SocketError.AddressFamilyNotSupported when endpoint.Optional:
                    return null;
                case SocketError.AddressAlreadyInUse:
                    throw new SiloStartupException($"{where} is already in use by another process ({endpoint.Setting}); stop that process or choose another port");
                case SocketError.AddressNotAvailable:
                    throw new SiloStartupException($"{where}: {address} is not an address of this machine (TwoPC:AdvertisedIp or {endpoint.Setting})");
                case SocketError.AccessDenied:
                    throw new SiloStartupException($"{where}: permission denied ({endpoint.Setting}); ports below 1024 need privileges");
                default:
                    throw new SiloStartupException($"{where} cannot be used ({endpoint.Setting}): {ex.Message}");
            }
        }
    }
}

/// <summary>Hands the held silo and gateway ports to Orleans just before its listeners bind them.</summary>
public static class PortReservationSiloExtensions
{
    public static ISiloBuilder ReleasePortsBeforeListening(this ISiloBuilder silo, PortReservation ports)
    {
        silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(new ReleaseBeforeListening(ports));
        return silo;
    }

    // Orleans' silo and gateway listeners bind at RuntimeInitialize - 1.
    private sealed class ReleaseBeforeListening(PortReservation ports) : ILifecycleParticipant<ISiloLifecycle>
    {
        public void Participate(ISiloLifecycle lifecycle) =>
            lifecycle.Subscribe(nameof(PortReservation), ServiceLifecycleStage.RuntimeInitialize - 2, _ =>
            {
                ports.Release();
                return Task.CompletedTask;
            });
    }
}
