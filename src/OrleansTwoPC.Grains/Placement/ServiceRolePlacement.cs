using Orleans.Metadata;
using Orleans.Placement;
using Orleans.Runtime;
using Orleans.Runtime.MembershipService.SiloMetadata;
using Orleans.Runtime.Placement;

namespace OrleansTwoPC.Grains.Placement;

/// <summary>Marks a grain class as belonging to one service role: it is activated only on silos of that role.</summary>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = false)]
public sealed class ServiceRolePlacementAttribute(string role)
    : PlacementFilterAttribute(new ServiceRolePlacementFilterStrategy(role));

/// <summary>
/// Placement filter strategy carrying the role. Orleans resolves one instance per grain type from DI and
/// initialises it from the grain type's properties, so the role travels as a grain property.
/// </summary>
public sealed class ServiceRolePlacementFilterStrategy(string role) : PlacementFilterStrategy(order: 0)
{
    private const string RoleProperty = "service-role";

    public ServiceRolePlacementFilterStrategy() : this(ServiceRoles.All)
    {
    }

    public string Role { get; private set; } = role;

    public override void AdditionalInitialize(GrainProperties properties) =>
        Role = GetPlacementFilterGrainProperty(RoleProperty, properties) ?? ServiceRoles.All;

    protected override IEnumerable<KeyValuePair<string, string>> GetAdditionalGrainProperties(
        IServiceProvider services, Type grainClass, GrainType grainType, IReadOnlyDictionary<string, string> existingProperties)
    {
        yield return new KeyValuePair<string, string>(RoleProperty, Role);
    }
}

/// <summary>
/// Keeps only the silos whose published roles include the grain's role. With no such silo the placement
/// fails, and the caller sees that service as unavailable: exactly what a down microservice looks like.
/// </summary>
public sealed class ServiceRolePlacementFilterDirector(SiloRoleLookup roles) : IPlacementFilterDirector
{
    public IEnumerable<SiloAddress> Filter(PlacementFilterStrategy filterStrategy, PlacementTarget target, IEnumerable<SiloAddress> silos)
    {
        var role = (filterStrategy as ServiceRolePlacementFilterStrategy)?.Role ?? ServiceRoles.All;
        if (role == ServiceRoles.All) return silos;
        return silos.Where(silo => ServiceRoles.Hosts(roles.Of(silo), role));
    }
}

/// <summary>The roles this silo was started with, in canonical form (see <see cref="ServiceRoles.Normalize"/>).</summary>
public sealed record LocalSiloRoles(string Roles);

/// <summary>What a silo of the cluster hosts, as this silo knows it (null: not known yet).</summary>
public sealed class SiloRoleLookup(ISiloMetadataCache metadata, ILocalSiloDetails localSilo, LocalSiloRoles localRoles)
{
    // This silo's own roles are known without the metadata cache, which fills asynchronously.
    public string? Of(SiloAddress silo) =>
        silo.Equals(localSilo.SiloAddress)
            ? localRoles.Roles
            : metadata.GetSiloMetadata(silo).Metadata.GetValueOrDefault(ServiceRoles.MetadataKey);
}
