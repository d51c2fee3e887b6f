using OrleansTwoPC.Protocol;

namespace OrleansTwoPC.Grains.Coordinator;

/// <summary>
/// SKUs and accounts this silo has seen exist, so that a coordinator asks a participant whether its
/// resource exists only the first time it meets it. An entry never goes stale: a SKU or account exists once
/// its seeding is durable (a participant's snapshot shows only durable state), and nothing deletes one (an
/// administrator can set a counter to zero, never remove it). Bounded: two generations of at most
/// <see cref="Capacity"/> entries; when the young one is full the old one is dropped, and a hit in the old
/// one moves back to the young, so the resources in use stay.
/// </summary>
public sealed class ExistingResourceCache
{
    private readonly object _gate = new();
    private HashSet<ParticipantId> _young = new();
    private HashSet<ParticipantId> _old = new();

    public ExistingResourceCache() : this(50_000)
    {
    }

    public ExistingResourceCache(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(capacity);
        Capacity = capacity;
    }

    public int Capacity { get; }

    /// <summary>Entries held now: at most twice <see cref="Capacity"/>.</summary>
    public int Count
    {
        get
        {
            lock (_gate) return _young.Count + _old.Count;
        }
    }

    public bool Contains(ParticipantId resource)
    {
        lock (_gate)
        {
            if (_young.Contains(resource)) return true;
            if (!_old.Remove(resource)) return false;
            AddLocked(resource);
            return true;
        }
    }

    public void Add(ParticipantId resource)
    {
        lock (_gate) AddLocked(resource);
    }

    private void AddLocked(ParticipantId resource)
    {
        if (_young.Contains(resource)) return;
        _old.Remove(resource);
        if (_young.Count >= Capacity)
        {
            _old = _young;
            _young = new HashSet<ParticipantId>();
        }
        _young.Add(resource);
    }
}
