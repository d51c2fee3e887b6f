using System.Collections.Concurrent;
using System.Reflection;
using Microsoft.Extensions.Logging;

namespace OrleansTwoPC.Grains.Participants;

/// <summary>
/// Refuses a <see cref="ClusterOnlyAttribute"/> operation (prepare, commit, rollback, in-doubt resolution)
/// unless it comes from inside the cluster: from a grain (the coordinator, the recovery agent) or from code
/// running on one of the cluster's silos (its hosted client). An external cluster client gets an
/// <see cref="UnauthorizedAccessException"/> before the grain sees the call; every other operation passes.
/// </summary>
public sealed class ClusterOnlyCallFilter(IClusterMembershipService membership, ILogger<ClusterOnlyCallFilter> logger) : IIncomingGrainCallFilter
{
    private static readonly ConcurrentDictionary<MethodInfo, bool> ClusterOnly = new();

    public Task Invoke(IIncomingGrainCallContext context)
    {
        var method = context.InterfaceMethod;
        if (method is null || !ClusterOnly.GetOrAdd(method, m => m.IsDefined(typeof(ClusterOnlyAttribute), inherit: true)) || FromInsideTheCluster(context.SourceId))
            return context.Invoke();
        logger.LogWarning("Refused {Interface}.{Method} on {Target} from {Source}: cluster-only operation called from outside the cluster",
            context.InterfaceName, context.MethodName, context.TargetId, context.SourceId);
        throw new UnauthorizedAccessException(
            $"{context.MethodName} on {context.TargetId} is accepted only from inside the cluster (its coordinator or recovery), not from a client; " +
            "place orders with ITransactionCoordinatorGrain.PlaceOrder and settle transactions with ITransactionAdminGrain");
    }

    /// <summary>
    /// A grain, or the hosted client of a silo of this cluster (code running on a silo outside any grain).
    /// Orleans names a silo's hosted client "hosted-" followed by the silo's address; an unknown source is
    /// refused.
    /// </summary>
    private bool FromInsideTheCluster(GrainId? source)
    {
        if (source is not { } id) return false;
        if (!GrainTypePrefix.IsClient(id)) return true;
        var key = id.Key.ToString();
        const string hostedPrefix = "hosted-";
        if (!key.StartsWith(hostedPrefix, StringComparison.Ordinal)) return false;
        var silo = key[hostedPrefix.Length..];
        return membership.CurrentSnapshot.Members.Values.Any(m => m.Status == SiloStatus.Active && m.SiloAddress.ToParsableString() == silo);
    }
}
