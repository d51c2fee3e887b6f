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
    /// <summary>The start of a reservation is left out of the form once the reservation is in doubt.</summary>
    PastInDoubtTimes = 1 << 2,
    /// <summary>A state and the state with the SKU and the account exchanged have one form (one order over both).</summary>
    Symmetry = 1 << 3,
    All = Subsumption | DeadMessages | PastInDoubtTimes | Symmetry,
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
        Reductions reductions = Reductions.All, ISet<UInt128>? forms = null, int? idSeed = null, Action<string>? progress = null)
    {
        var clock = Stopwatch.StartNew();
        var initial = Initial(scope, bugs, reductions.HasFlag(Reductions.DeadMessages), idSeed is { } seed ? new Random(seed) : null);
        var subsume = reductions.HasFlag(Reductions.Subsumption);
        initial.Check();
        // Per state, numbered in the order found (breadth-first, so also the order expanded): the hash of its
        // canonical form, its spare fault budgets (by number: a scope has few vectors), the state it was first
        // reached from and the position of that event among the ones enabled there. A state is new only if no
        // state of its form seen so far has at least its budgets (it could do everything this one can).
        var seen = new FingerprintTable();
        var budgetVectors = new List<long>();
        var budgetNumbers = new Dictionary<long, ushort>();
        var spare = new BigList<ushort>();
        var parent = new BigList<int>();
        var via = new BigList<byte>();
        var settled = new BigList<bool>();
        // The fault-free edges, for termination: those of state s are fairTo[fairFrom[s] .. fairFrom[s + 1]).
        var fairFrom = new BigList<int>();
        var fairTo = new BigList<int>();
        int settledCount = 0, committedSettled = 0, abortedSettled = 0;
        var queue = new WorldQueue(initial);
        long transitions = 0;
        int depth = 0, levelEnd = 1, deepest = 0;
        var levels = new List<int> { 1, 0 };

        // The form searched merges what the reductions on merge; the one compared merges what any of them would.
        var merged = reductions & (Reductions.PastInDoubtTimes | Reductions.Symmetry);
        Found(Hash(initial, merged), initial, -1, 0);
        forms?.Add(Hash(initial, Reductions.All));

        for (var id = 0; !queue.IsEmpty; id++)
        {
            var world = queue.Dequeue();
            if (id == levelEnd)
            {
                progress?.Invoke($"depth {depth}: {levels[depth]:N0} states; {seen.Count:N0} in all, {transitions:N0} transitions, {clock.Elapsed.TotalSeconds:0} s, " +
                                 $"{queue.Parts:N0} parts kept, heap {GC.GetTotalMemory(false) >> 20:N0} MB, working set {Environment.WorkingSet >> 20:N0} MB");
                depth++;
                levelEnd = seen.Count;
                levels.Add(0); // the level after the one now expanded
            }
            fairFrom.Add(checked((int)fairTo.Count));
            var events = world.Enabled().ToList();
            if (events.Count > byte.MaxValue) throw new InvalidOperationException($"{events.Count} events enabled in one state: a trace keeps each as a byte");
            for (var e = 0; e < events.Count; e++)
            {
                var ev = events[e];
                transitions++;
                var next = world.Clone();
                UInt128 hash;
                int nextId;
                try
                {
                    next.Apply(ev);
                    hash = Hash(next, merged);
                    nextId = Covering(hash, next.SpareFaults);
                    // A state covered by one seen before has the same canonical form, so that one's check holds for it.
                    if (nextId < 0) next.Check();
                }
                catch (Exception ex) when (ex is ExplorationViolation or InvalidOperationException or ArgumentException or KeyNotFoundException)
                {
                    var trace = Replay(initial, Path(id).Append(e));
                    return new ExplorationResult(seen.Count, transitions, depth + 1, 0, clock.Elapsed, ex.Message, trace);
                }
                if (nextId < 0)
                {
                    if (seen.Count >= maxStates)
                        return new ExplorationResult(seen.Count, transitions, depth + 1, settledCount, clock.Elapsed,
                            $"{scope.Name}: more than {maxStates} states; lower the budgets (the deepest path so far follows)",
                            Replay(initial, Path(id).Append(e)));
                    nextId = seen.Count;
                    Found(hash, next, id, e);
                    forms?.Add(Hash(next, Reductions.All));
                    levels[depth + 1]++;
                    deepest = depth + 1;
                }
                // Into a covering state: it has the same canonical form, and fault-free events read no budget. An
                // edge back to its own state reaches nothing new.
                if (!ev.IsFault && nextId != id) fairTo.Add(nextId);
            }
        }
        fairFrom.Add(checked((int)fairTo.Count));
        progress?.Invoke($"depth {depth}: {levels[depth]:N0} states; {seen.Count:N0} in all, {transitions:N0} transitions, {clock.Elapsed.TotalSeconds:0} s, " +
                         $"{queue.Parts:N0} parts kept, heap {GC.GetTotalMemory(false) >> 20:N0} MB, working set {Environment.WorkingSet >> 20:N0} MB");

        var stuck = FirstStuck();
        if (stuck >= 0)
        {
            var path = Path(stuck).ToList();
            var trace = Replay(initial, path);
            var state = At(initial, path);
            trace.Add("from here no fault-free continuation settles; state:");
            trace.AddRange(state.Describe().Select(line => "    " + line));
            return new ExplorationResult(seen.Count, transitions, deepest, settledCount, clock.Elapsed,
                "termination: a reachable state from which no fault-free continuation resolves every participant", trace);
        }
        return new ExplorationResult(seen.Count, transitions, deepest, settledCount, clock.Elapsed, null, Array.Empty<string>())
        {
            SettledOutcomes = (committedSettled, abortedSettled),
        };

        void Found(UInt128 hash, World world, int from, int e)
        {
            var budgets = world.SpareFaults;
            if (!budgetNumbers.TryGetValue(budgets, out var number))
            {
                number = checked((ushort)budgetVectors.Count);
                budgetNumbers.Add(budgets, number);
                budgetVectors.Add(budgets);
            }
            seen.Add(hash);
            spare.Add(number);
            parent.Add(from);
            via.Add((byte)e);
            var isSettled = world.Settled();
            settled.Add(isSettled);
            if (isSettled)
            {
                settledCount++;
                if (world.Coordinators.Any(c => c.Durable?.Decision == Decision.Commit)) committedSettled++;
                if (world.Coordinators.Any(c => c.Durable?.Decision == Decision.Abort)) abortedSettled++;
            }
            queue.Enqueue(world);
        }

        int Covering(UInt128 hash, long budgets)
        {
            var cursor = -1;
            while (seen.Next(hash, ref cursor, out var s))
            {
                var vector = budgetVectors[spare[s]];
                if (subsume ? World.Covers(vector, budgets) : vector == budgets) return s;
            }
            return -1;
        }

        IEnumerable<int> Path(int id)
        {
            var events = new List<int>();
            for (var s = id; parent[s] >= 0; s = parent[s]) events.Add(via[s]);
            events.Reverse();
            return events;
        }

        int FirstStuck()
        {
            // Which states reach a settled one over fault-free edges: a fixpoint, swept from the last state to the
            // first, as most edges lead to a state found later; each sweep also follows the edges that lead back.
            var count = seen.Count;
            var reaches = new BigList<bool>();
            for (var s = 0; s < count; s++) reaches.Add(settled[s]);
            for (var changed = true; changed;)
            {
                changed = false;
                for (var s = count - 1; s >= 0; s--)
                {
                    if (reaches[s]) continue;
                    for (long i = fairFrom[s], end = fairFrom[s + 1]; i < end; i++)
                    {
                        if (!reaches[fairTo[i]]) continue;
                        reaches[s] = true;
                        changed = true;
                        break;
                    }
                }
            }
            // States are numbered breadth-first, so the lowest unreached number is a shallowest stuck state.
            for (var s = 0; s < count; s++)
                if (!reaches[s]) return s;
            return -1;
        }
    }

    /// <summary>The state a path of event positions leads to from <paramref name="initial"/>.</summary>
    private static World At(World initial, IEnumerable<int> path)
    {
        var world = initial.Clone();
        foreach (var e in path) world.Apply(world.Enabled().ElementAt(e));
        return world;
    }

    /// <summary>Replays a path (each event by its position among those enabled) with narration on: the trace in the
    /// protocol's own words.</summary>
    private static List<string> Replay(World initial, IEnumerable<int> path)
    {
        var world = initial.Clone();
        world.Notes = new List<string>();
        var step = 0;
        foreach (var e in path)
        {
            var before = world.Notes.Count;
            try
            {
                world.Apply(world.Enabled().ElementAt(e));
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

    private static UInt128 Hash(World world, Reductions merged)
    {
        var key = _key ??= new StateKey();
        world.WriteKey(key, merged);
        var hash = key.Hash();
        if (!merged.HasFlag(Reductions.Symmetry) || world.Symmetry is not { } swap) return hash;
        // The form of the pair: the smaller hash of the two ways to write it (either state of the pair gives both).
        world.WriteKey(key, merged, swap);
        return UInt128.Min(hash, key.Hash());
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
        participants.Add(Counter(sku, stock, 1, "insufficient stock"));
        ParticipantId? account = null;
        if (scope.WithAccount)
        {
            account = new ParticipantId(ParticipantKind.Payment, Fresh("ACC-"));
            participants.Add(Counter(account, 500, 300, "insufficient funds"));
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
            // One order over the SKU and the account: each has room for it and is asked for it once (one amount each),
            // so the two counters behave alike, measured in orders.
            Symmetry = account is not null && orders == 1 ? new Swap(0, 1, sku.ToString(), account.ToString()) : null,
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

        // The form counts what was taken and consumed in orders of this counter (each order takes the same amount here),
        // with the remainders, so it loses nothing and the SKU and the account write alike.
        ExParticipant Counter(ParticipantId id, long initial, long perOrder, string shortage) => new ExParticipant<EscrowCounter, long>(
            id, new EscrowRules(shortage), new EscrowCounter { Exists = true, Committed = initial, SuppliedTotal = initial },
            tx => amounts[(id.ToString(), tx)], retention,
            c => $"{c.Committed}/{c.ConsumedTotal}",
            (key, c) =>
            {
                key.Add(Math.DivRem(initial - c.Committed, perOrder, out var taken)); key.Add(taken);
                key.Add(Math.DivRem(c.ConsumedTotal, perOrder, out var consumed)); key.Add(consumed);
            },
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
