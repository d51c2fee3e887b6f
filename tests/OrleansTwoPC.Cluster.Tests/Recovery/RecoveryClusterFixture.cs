using OrleansTwoPC.Cluster.Tests.Infrastructure;

namespace OrleansTwoPC.Cluster.Tests.Recovery;

/// <summary>Three silos with membership, storage and reminders in PostgreSQL: silos can be killed.</summary>
public sealed class RecoveryClusterFixture : TwoPcClusterFixture
{
    protected override int SiloCount => 3;
    protected override bool UseAdoNetMembership => true;
    protected override string Name => "recovery";
}

[CollectionDefinition(Name)]
public sealed class RecoveryCollection : ICollectionFixture<RecoveryClusterFixture>
{
    public const string Name = "three-silo cluster with silo kills";
}
