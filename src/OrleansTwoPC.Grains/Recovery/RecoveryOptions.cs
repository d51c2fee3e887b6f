namespace OrleansTwoPC.Grains.Recovery;

/// <summary>Bound from configuration section "TwoPC:Recovery".</summary>
public sealed class RecoveryOptions
{
    /// <summary>Period of the recovery sweep reminder.</summary>
    public TimeSpan SweepInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>A decided coordinator is resumed by the sweep only once its record is this old (younger
    /// ones are still delivering on their own).</summary>
    public TimeSpan CoordinatorGrace { get; set; } = TimeSpan.FromSeconds(10);

    public void Validate()
    {
        if (SweepInterval <= TimeSpan.Zero) throw new ArgumentException("SweepInterval must be positive");
        if (CoordinatorGrace < TimeSpan.Zero) throw new ArgumentException("CoordinatorGrace cannot be negative");
    }
}
