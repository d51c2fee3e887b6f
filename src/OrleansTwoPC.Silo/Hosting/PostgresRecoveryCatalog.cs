using OrleansTwoPC.Grains.Placement;
using OrleansTwoPC.Grains.Recovery;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// Answers recovery's and operators' questions from the service databases (read-only SQL). It reads only the
/// databases this silo holds credentials for (<see cref="StoredStateReader.Databases"/>, its own services'):
/// another service's participants are asked of that service's recovery grain, which reads them on a silo of
/// that service.
/// </summary>
public sealed class PostgresRecoveryCatalog(
    StoredStateReader reader, IGrainFactory grains, IClusterMembershipService membership, SiloRoleLookup roles, TimeProvider time) : IRecoveryCatalog
{
    public async Task<IReadOnlyList<string>> UnfinishedCoordinatorsAsync(TimeSpan olderThan, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        return (await reader.CoordinatorsAsync(unfinishedOnly: true, cancellationToken))
            .Where(c => c.State.IsDecided && !c.State.IsCompleted && now - (c.State.DecidedAt ?? c.State.StartedAt) >= olderThan)
            .Select(c => c.Key)
            .ToList();
    }

    public bool Reads(ParticipantKind kind) => reader.Databases.Has(DatabaseOf(kind));

    public async Task<IReadOnlyList<PreparedParticipant>> PreparedParticipantsAsync(ParticipantKind kind, TimeSpan olderThan, string? transactionId = null, CancellationToken cancellationToken = default)
    {
        if (!Reads(kind))
            return (await Remote(kind).Prepared(olderThan, transactionId))
                .Select(p => new PreparedParticipant(new ParticipantId(kind, p.Key), p.TransactionId, p.Coordinator, p.PreparedAt)).ToList();
        var now = time.GetUtcNow();
        var all = kind switch
        {
            ParticipantKind.Inventory => Prepared(kind, await reader.InventoryAsync(true, cancellationToken: cancellationToken)),
            ParticipantKind.Payment => Prepared(kind, await reader.PaymentsAsync(true, cancellationToken: cancellationToken)),
            _ => Prepared(kind, await reader.ShipmentsAsync(true, cancellationToken: cancellationToken)),
        };
        return all.Where(p => now - p.PreparedAt >= olderThan && (transactionId is null || p.TransactionId == transactionId)).ToList();
    }

    public async Task<IReadOnlyList<TimelineEvent>> ParticipantEventsAsync(ParticipantKind kind, string transactionId, IReadOnlyList<string> keys, bool findOthers, CancellationToken cancellationToken = default)
    {
        if (!Reads(kind)) return await Remote(kind).Events(transactionId, keys, findOthers);
        var participants = keys.ToHashSet();
        foreach (var p in await PreparedParticipantsAsync(kind, TimeSpan.Zero, transactionId, cancellationToken)) participants.Add(p.Participant.Key);
        // A presumed or heuristic abort record names no participants: find those that still remember it.
        if (findOthers)
            foreach (var (participant, _) in await reader.ParticipantsMentioningAsync(transactionId, kind, cancellationToken)) participants.Add(participant.Key);

        var events = new List<TimelineEvent>();
        foreach (var key in participants)
        {
            var participant = new ParticipantId(kind, key);
            var (prepared, decided) = await ParticipantView(participant, transactionId, cancellationToken);
            if (prepared is { } at)
                events.Add(new TimelineEvent(at, participant.ToString(), "prepared (reservation durable, waiting for the decision)"));
            if (decided is { } d)
                events.Add(new TimelineEvent(d.DecidedAt, participant.ToString(), d.Outcome == Decision.Commit ? "committed" : "rolled back"));
        }

        return events;
    }

    public async Task<IReadOnlyList<UnfinishedTransaction>> ListUnfinishedAsync(CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        var result = new List<UnfinishedTransaction>();
        var decided = (await reader.CoordinatorsAsync(unfinishedOnly: true, cancellationToken))
            .Where(c => c.State.IsDecided && !c.State.IsCompleted).ToList();
        foreach (var c in decided)
        {
            result.Add(new UnfinishedTransaction(c.Key, "decided, phase two not acknowledged by all", c.State.Decision.ToString(),
                now - c.State.StartedAt,
                c.State.Participants.Select(p => new ParticipantVote(p.Participant, p.Vote?.ToString() ?? p.Source.ToString(),
                    p.Acknowledged ? "acknowledged" : "not acknowledged")).ToList()));
        }
        var known = decided.Select(c => c.Key).ToHashSet();
        foreach (var group in (await AllPreparedAsync(null, cancellationToken)).GroupBy(p => p.TransactionId))
        {
            if (known.Contains(group.Key)) continue;
            var record = (await reader.CoordinatorAsync(group.Key, cancellationToken)).FirstOrDefault()?.State;
            var state = record is { IsDecided: true } ? $"decided {record.Decision}, participant not told yet" : "in doubt: prepared, no durable decision";
            result.Add(new UnfinishedTransaction(group.Key, state, record?.Decision.ToString() ?? "None",
                now - group.Min(p => p.PreparedAt),
                group.Select(p => new ParticipantVote(p.Participant.ToString(), "Prepared", $"prepared at {p.PreparedAt:O}")).ToList()));
        }
        return result.OrderByDescending(t => t.Age).ToList();
    }

    public async Task<TransactionTimeline> TimelineAsync(string transactionId, CancellationToken cancellationToken = default)
    {
        var events = new List<TimelineEvent>();
        var record = (await reader.CoordinatorAsync(transactionId, cancellationToken)).FirstOrDefault()?.State;
        var participants = new HashSet<ParticipantId>();
        if (record is not null)
        {
            if (!record.PresumedAbort)
                events.Add(new TimelineEvent(record.StartedAt, "coordinator", $"begin: prepare sent to {record.Participants.Count} participants, deadline {record.PrepareDeadline:O}"));
            foreach (var p in record.Participants)
            {
                participants.Add(p.Id);
                events.Add(new TimelineEvent(record.DecidedAt ?? record.StartedAt, "coordinator",
                    $"vote of {p.Participant}: {p.Vote?.ToString() ?? p.Source.ToString()}{(p.Reason is null ? "" : $" ({p.Reason})")}"));
            }
            if (record.IsDecided)
                events.Add(new TimelineEvent(record.DecidedAt ?? record.StartedAt, "coordinator",
                    $"decision {record.Decision} written{(record.Heuristic ? " (heuristic, by an operator)" : record.PresumedAbort ? " (presumed abort)" : "")}{(record.AbortReason is null ? "" : $": {record.AbortReason}")}"));
            if (record.CompletedAt is { } completed)
                events.Add(new TimelineEvent(completed, "coordinator", "completed: every participant acknowledged"));
        }

        var findOthers = record is null || record.Participants.Count == 0;
        var serviceEvents = new List<TimelineEvent>();
        foreach (var kind in ServiceRecovery.Kinds)
        {
            var keys = participants.Where(p => p.Kind == kind).Select(p => p.Key).ToList();
            serviceEvents.AddRange(await ParticipantEventsAsync(kind, transactionId, keys, findOthers, cancellationToken));
        }

        events.AddRange(serviceEvents);
        return new TransactionTimeline(transactionId, record is not null || serviceEvents.Count > 0,
            record?.Decision.ToString() ?? "None", events.OrderBy(e => e.At).ToList());
    }

    private async Task<IReadOnlyList<PreparedParticipant>> AllPreparedAsync(string? transactionId, CancellationToken cancellationToken)
    {
        var all = new List<PreparedParticipant>();
        foreach (var kind in ServiceRecovery.Kinds) all.AddRange(await PreparedParticipantsAsync(kind, TimeSpan.Zero, transactionId, cancellationToken));
        return all;
    }

    /// <summary>
    /// The service's recovery grain, unless no active silo may host it: then one line saying the service is down,
    /// rather than a placement failure (and Orleans' retries and error logs) on every sweep of an outage.
    /// </summary>
    private IServiceRecoveryGrain Remote(ParticipantKind kind)
    {
        var role = kind switch
        {
            ParticipantKind.Inventory => ServiceRoles.Inventory,
            ParticipantKind.Payment => ServiceRoles.Payment,
            _ => ServiceRoles.Shipping,
        };
        // Placement never uses a silo whose roles are not known yet (a silo just started), so only a known one counts:
        // asking before would fail placement after Orleans' retries, each logged.
        var up = membership.CurrentSnapshot.Members.Values.Any(m => m.Status == SiloStatus.Active && roles.Of(m.SiloAddress) is { } siloRoles && ServiceRoles.Hosts(siloRoles, role));
        return up ? ServiceRecovery.For(grains, kind) : throw new InvalidOperationException($"the {role} service is down: no active silo with role '{role}'");
    }

    private static string DatabaseOf(ParticipantKind kind) => kind switch
    {
        ParticipantKind.Inventory => "Inventory",
        ParticipantKind.Payment => "Payments",
        ParticipantKind.Shipment => "Shipping",
        _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown participant kind"),
    };

    private async Task<(DateTimeOffset? PreparedAt, DecidedTransaction? Decided)> ParticipantView(ParticipantId participant, string tx, CancellationToken cancellationToken)
    {
        switch (participant.Kind)
        {
            case ParticipantKind.Inventory:
                return View((await reader.InventoryAsync(false, participant.Key, cancellationToken)).FirstOrDefault()?.State, tx);
            case ParticipantKind.Payment:
                return View((await reader.PaymentsAsync(false, participant.Key, cancellationToken)).FirstOrDefault()?.State, tx);
            default:
                return View((await reader.ShipmentsAsync(false, participant.Key, cancellationToken)).FirstOrDefault()?.State, tx);
        }
    }

    private static (DateTimeOffset?, DecidedTransaction?) View<TResource, TWork>(ParticipantRecord<TResource, TWork>? record, string tx) where TResource : new() =>
        record is null ? (null, null)
        : (record.Prepared.TryGetValue(tx, out var p) ? p.PreparedAt : null, record.Decided.GetValueOrDefault(tx));

    private static IEnumerable<PreparedParticipant> Prepared<TResource, TWork>(ParticipantKind kind, IEnumerable<StoredState<ParticipantRecord<TResource, TWork>>> rows) where TResource : new() =>
        rows.SelectMany(r => r.State.Prepared.Select(p => new PreparedParticipant(new ParticipantId(kind, r.Key), p.Key, p.Value.Coordinator, p.Value.PreparedAt)));
}
