using System.Diagnostics;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;

namespace OrleansTwoPC.Protocol.Tests.Exploration;

/// <summary>State-space reductions, each sound for every property checked (see docs/design.md).</summary>
[Flags]
public enum Reductions
{
    None = 0,
    /// <summary>A state is not explored when one of the same form with budgets at least as large was.</summary>
    Subsumption = 1 << 0,
    /// <summary>Messages that can change nothing any more are taken out of flight.</summary>
    DeadMessages = 1 << 1,
    All = Subsumption | DeadMessages,
}

/// <summary>What is explored: the transactions, who takes part, and the fault budgets.</summary>
public sealed record ExplorationScope(string Name, FaultBudgets Budgets, bool CompetingForOneSku, bool WithAccount, bool WithShipment = true)
{
    /// <summary>One order over a SKU and the shipment, and, with <paramref name="withAccount"/>, an account too.</summary>
    public static ExplorationScope OneTransaction(FaultBudgets budgets, bool withAccount) =>
        new($"one transaction, {(withAccount ? "three" : "two")} participants", budgets, CompetingForOneSku: false, withAccount);

    /// <summary>One order over a SKU alone: room for the faults that start a second attempt (resubmission).</summary>
    public static ExplorationScope OneTransactionOneParticipant(FaultBudgets budgets) =>
        new("one transaction, one participant", budgets, CompetingForOneSku: false, WithAccount: false, WithShipment: false);

    /// <summary>Two orders for one SKU whose stock covers only one of them (the SKU is each order's only participant).</summary>
    public static ExplorationScope TwoCompeting(FaultBudgets budgets) => new("two transactions competing for one SKU", budgets, CompetingForOneSku: true, WithAccount: false);
}

public sealed record ExplorationResult(
    int States,
    long Transitions,
    int Depth,
    int SettledStates,
    TimeSpan Elapsed,
    string? Violation,
    IReadOnlyList<string> Trace)
{
    /// <summary>Settled states in which some transaction is durably committed, and in which some is durably aborted.</summary>
    public (int Committed, int Aborted) SettledOutcomes { get; init; }
}

/// <summary>
/// Exhaustive breadth-first exploration of the real <see cref="Coordinator.CoordinatorMachine"/> and
/// <see cref="ParticipantMachine{TResource, TWork}"/> under every interleaving of deliveries and faults
/// within budgets. States are deduplicated by a hash of their canonical form. Breadth-first, so the first
/// violation found comes with a shortest trace. Afterwards, termination is checked on the explored graph:
/// every state must reach a settled one by fault-free events alone.
/// </summary>
public static class Explorer
{
    public static readonly DateTimeOffset Epoch = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>Smallest step of the simulated clock: "just after" a keep-until time or a record's start.</summary>
    public static readonly TimeSpan Step = TimeSpan.FromMilliseconds(100);

    public static ProtocolOptions Options { get; } = new()
    {
        PrepareTimeout = TimeSpan.FromSeconds(1),
        RetryBaseDelay = TimeSpan.FromMilliseconds(100),
        RetryMaxDelay = TimeSpan.FromSeconds(1),
        DecisionRetention = TimeSpan.FromSeconds(2),
        InDoubtTimeout = TimeSpan.FromSeconds(1),
    };

    /// <param name="reductions">Which reductions are on (all by default; the tests compare with them off).</param>
    /// <param name="forms">When given, receives the canonical form of every state explored, with dead messages left
    /// out, so that searches with and without <see cref="Reductions.DeadMessages"/> can be compared.</param>
    /// <param name="idSeed">When given, the ids are drawn from a random generator with this seed, so that two runs
    /// name everything alike and their forms can be compared.</param>
    public static ExplorationResult Run(ExplorationScope scope, PlantedBug bugs = PlantedBug.None, int maxStates = 3_000_000,
        Reductions reductions = Reductions.All, ISet<UInt128>? forms = null, int? idSeed = null)
    {
        var clock = Stopwatch.StartNew();
        var initial = Initial(scope, bugs, reductions.HasFlag(Reductions.DeadMessages), idSeed is { } seed ? new Random(seed) : null);
        var subsume = reductions.HasFlag(Reductions.Subsumption);
        initial.Check();
        // A state is its canonical form and its spare fault budgets. States of one form are chained; a state is
        // new only if no state of its form seen so far has at least its budgets (it could do everything this one can).
        var byKey = new Dictionary<UInt128, int> { [Hash(initial)] = 0 };
        forms?.Add(Hash(initial, withoutDead: true));
        var sameKey = new List<int> { -1 };
        var spare = new List<long> { initial.SpareFaults };
        var parent = new List<int> { -1 };
        var via = new List<ExEvent?> { null };
        var depth = new List<int> { 0 };
        var fairFrom = new List<int>();
        var fairTo = new List<int>();
        var settled = new List<int>();
        int committedSettled = 0, abortedSettled = 0;
        var queue = new Queue<(int Id, World World)>();
        queue.Enqueue((0, initial));
        long transitions = 0;

        while (queue.Count > 0)
        {
            var (id, world) = queue.Dequeue();
            foreach (var ev in world.Enabled().ToList())
            {
                transitions++;
                var next = world.Clone();
                UInt128 hash;
                int nextId;
                try
                {
                    next.Apply(ev);
                    hash = Hash(next);
                    nextId = Covering(hash, next.SpareFaults);
                    // A state covered by one seen before has the same canonical form, so that one's check holds for it.
                    if (nextId < 0) next.Check();
                }
                catch (Exception ex) when (ex is ExplorationViolation or InvalidOperationException or ArgumentException or KeyNotFoundException)
                {
                    var trace = Replay(initial, Path(parent, via, id).Append(ev));
                    return new ExplorationResult(parent.Count, transitions, depth[id] + 1, 0, clock.Elapsed, ex.Message, trace);
                }
                if (nextId < 0)
                {
                    nextId = parent.Count;
                    if (nextId >= maxStates)
                        return new ExplorationResult(parent.Count, transitions, depth[id] + 1, settled.Count, clock.Elapsed,
                            $"{scope.Name}: more than {maxStates} states; lower the budgets (the deepest path so far follows)",
                            Replay(initial, Path(parent, via, id).Append(ev)));
                    sameKey.Add(byKey.TryGetValue(hash, out var head) ? head : -1);
                    byKey[hash] = nextId;
                    forms?.Add(Hash(next, withoutDead: true));
                    spare.Add(next.SpareFaults);
                    parent.Add(id);
                    via.Add(ev);
                    depth.Add(depth[id] + 1);
                    queue.Enqueue((nextId, next));
                    if (next.Settled())
                    {
                        settled.Add(nextId);
                        if (next.Coordinators.Any(c => c.Durable?.Decision == Decision.Commit)) committedSettled++;
                        if (next.Coordinators.Any(c => c.Durable?.Decision == Decision.Abort)) abortedSettled++;
                    }
                }
                // Into a covering state: it has the same canonical form, and fault-free events read no budget.
                if (!ev.IsFault)
                {
                    fairFrom.Add(id);
                    fairTo.Add(nextId);
                }
            }
        }

        var stuck = FirstStuck(parent.Count, fairFrom, fairTo);
        if (stuck >= 0)
        {
            var path = Path(parent, via, stuck).ToList();
            var trace = Replay(initial, path).ToList();
            var state = initial.Clone();
            foreach (var ev in path) state.Apply(ev);
            trace.Add("from here no fault-free continuation settles; state:");
            trace.AddRange(state.Describe().Select(line => "    " + line));
            return new ExplorationResult(parent.Count, transitions, depth.Max(), settled.Count, clock.Elapsed,
                "termination: a reachable state from which no fault-free continuation resolves every participant", trace);
        }
        return new ExplorationResult(parent.Count, transitions, depth.Max(), settled.Count, clock.Elapsed, null, Array.Empty<string>())
        {
            SettledOutcomes = (committedSettled, abortedSettled),
        };

        int Covering(UInt128 hash, long budgets)
        {
            if (!byKey.TryGetValue(hash, out var s)) return -1;
            for (; s >= 0; s = sameKey[s])
                if (subsume ? World.Covers(spare[s], budgets) : spare[s] == budgets) return s;
            return -1;
        }

        int FirstStuck(int count, List<int> from, List<int> to)
        {
            // Backwards from the settled states over fault-free edges; states are numbered breadth-first, so
            // the lowest unreached number is a shallowest stuck state.
            var incoming = new List<int>[count];
            for (var i = 0; i < from.Count; i++) (incoming[to[i]] ??= new List<int>()).Add(from[i]);
            var reaches = new bool[count];
            var work = new Stack<int>();
            foreach (var s in settled) { reaches[s] = true; work.Push(s); }
            while (work.Count > 0)
            {
                var s = work.Pop();
                if (incoming[s] is null) continue;
                foreach (var p in incoming[s])
                    if (!reaches[p]) { reaches[p] = true; work.Push(p); }
            }
            return Array.IndexOf(reaches, false);
        }
    }

    private static IEnumerable<ExEvent> Path(List<int> parent, List<ExEvent?> via, int id)
    {
        var events = new List<ExEvent>();
        for (var s = id; parent[s] >= 0; s = parent[s]) events.Add(via[s]!);
        events.Reverse();
        return events;
    }

    /// <summary>Replays a path with narration on: the trace in the protocol's own words.</summary>
    private static List<string> Replay(World initial, IEnumerable<ExEvent> path)
    {
        var world = initial.Clone();
        world.Notes = new List<string>();
        var step = 0;
        foreach (var ev in path)
        {
            var before = world.Notes.Count;
            try
            {
                world.Apply(ev);
                world.Check();
            }
            catch (Exception ex) when (ex is ExplorationViolation or InvalidOperationException or ArgumentException or KeyNotFoundException)
            {
                world.Notes.Add($"    VIOLATION: {ex.Message}");
            }
            step++;
            if (world.Notes.Count > before) world.Notes[before] = $"{step,3}. {world.Notes[before]}";
        }
        return world.Notes;
    }

    [ThreadStatic] private static StateKey? _key;

    private static UInt128 Hash(World world, bool withoutDead = false)
    {
        var key = _key ??= new StateKey();
        world.WriteKey(key, withoutDead);
        return key.Hash();
    }

    // ---------------------------------------------------------------- the scopes' worlds

    private static World Initial(ExplorationScope scope, PlantedBug bugs, bool leaveOutDead, Random? ids)
    {
        // Ids are generated, not hand-picked: nothing may depend on their spelling.
        string Fresh(string prefix) => prefix + (ids is null ? Guid.NewGuid().ToString("N")[..8] : ids.Next().ToString("x8", System.Globalization.CultureInfo.InvariantCulture));
        var retention = bugs.HasFlag(PlantedBug.TombstonePrunedBeforeRetention) ? -2 * Options.PrepareTimeout : Options.DecisionRetention;
        var coordinators = new List<ExCoordinator>();
        var participants = new List<ExParticipant>();
        var amounts = new Dictionary<(string Participant, string Tx), long>();
        var shipments = new Dictionary<string, ShipmentDetails>();

        var sku = new ParticipantId(ParticipantKind.Inventory, Fresh("SKU-"));
        var orders = scope.CompetingForOneSku ? 2 : 1;
        var stock = scope.CompetingForOneSku ? 1 : 2;
        participants.Add(Counter(sku, stock, "insufficient stock"));
        ParticipantId? account = null;
        if (scope.WithAccount)
        {
            account = new ParticipantId(ParticipantKind.Payment, Fresh("ACC-"));
            participants.Add(Counter(account, 500, "insufficient funds"));
        }
        for (var i = 0; i < orders; i++)
        {
            var order = Fresh("O");
            var tx = Abstractions.TransactionIds.FromOrderId(order);
            var shipment = new ParticipantId(ParticipantKind.Shipment, order);
            var members = new List<ParticipantId> { sku };
            amounts[(sku.ToString(), tx)] = 1;
            if (account is not null)
            {
                members.Add(account);
                amounts[(account.ToString(), tx)] = 300;
            }
            coordinators.Add(new ExCoordinator { Tx = tx, Participants = members, Machine = new Coordinator.CoordinatorMachine(tx, Options, null) });
            if (scope.CompetingForOneSku || !scope.WithShipment) continue; // the SKU alone: two orders over three participants explode past the CI budget
            members.Add(shipment);
            shipments[tx] = new ShipmentDetails { OrderId = order, Address = $"{i + 1} Exploration Way", Items = { new ShipmentItem { Sku = sku.Key, Quantity = 1 } } };
            participants.Add(new ExParticipant<ShipmentRecord, ShipmentDetails>(
                shipment, new ShipmentRules(), new ShipmentRecord(), t => shipments[t], retention,
                r => $"{r.Status}:{r.TransactionId}",
                (key, r) => { key.Add((int)r.Status); key.Add(r.TransactionId); },
                (who, r, tentative) =>
                {
                    if (tentative.Count > 1) throw new ExplorationViolation($"escrow safety: {who} holds {tentative.Count} tentative shipments");
                }));
        }

        var b = scope.Budgets;
        return new World
        {
            Now = Epoch,
            Bugs = bugs,
            LeavesOutDeadMessages = leaveOutDead,
            TombstoneTime = b.DuplicateActivations > 0 || bugs.HasFlag(PlantedBug.TombstonePrunedBeforeRetention),
            CoordinatorCrashes = b.CoordinatorCrashes,
            ParticipantCrashes = b.ParticipantCrashes,
            Drops = b.Drops,
            Duplicates = b.Duplicates,
            WriteFailures = b.WriteFailures,
            Resubmits = b.Resubmits,
            DuplicateActivations = b.DuplicateActivations,
            Coordinators = coordinators,
            Participants = participants,
            Messages = new List<ExMessage>(),
            DurableOutcomes = new SmallMap<string, Decision>(StringComparer.Ordinal),
            RolledBackAttempts = new SmallSet<string>(StringComparer.Ordinal),
        };

        ExParticipant Counter(ParticipantId id, long initial, string shortage) => new ExParticipant<EscrowCounter, long>(
            id, new EscrowRules(shortage), new EscrowCounter { Exists = true, Committed = initial, SuppliedTotal = initial },
            tx => amounts[(id.ToString(), tx)], retention,
            c => $"{c.Committed}/{c.ConsumedTotal}",
            (key, c) => { key.Add(c.Committed); key.Add(c.ConsumedTotal); },
            (who, counter, reserved) =>
            {
                // Escrow safety: committed plus reserved never exceeds the stock; no negative balance.
                if (counter.Committed < 0) throw new ExplorationViolation($"escrow safety: {who} has a negative balance {counter.Committed}");
                if (reserved.Sum() > counter.Committed) throw new ExplorationViolation($"escrow safety: {who} reserves {reserved.Sum()} of {counter.Committed} left");
                if (counter.Committed + counter.ConsumedTotal != initial)
                    throw new ExplorationViolation($"escrow safety: {who} has {counter.Committed} left and {counter.ConsumedTotal} consumed of {initial}");
            });
    }
}
