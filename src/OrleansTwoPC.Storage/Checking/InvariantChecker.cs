using System.Diagnostics;
using System.Globalization;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Storage.Checking;

/// <summary>Everything the checker reads, in one place. Participants are read before coordinators (see
/// <see cref="InvariantChecker.ReadSnapshotAsync"/>).</summary>
public sealed record InvariantSnapshot(
    DateTimeOffset TakenAt,
    IReadOnlyList<StoredState<ParticipantRecord<EscrowCounter, long>>> Inventory,
    IReadOnlyList<StoredState<ParticipantRecord<EscrowCounter, long>>> Payments,
    IReadOnlyList<StoredState<ParticipantRecord<ShipmentRecord, ShipmentDetails>>> Shipments,
    IReadOnlyList<StoredState<CoordinatorRecord>> Coordinators);

/// <summary>
/// Verifies the system invariants I1-I5 by reading the four service databases directly (never through
/// Orleans), so it also sees what no grain would report. The coordinator records are the reference: each
/// carries the decision and the order summary (order, account, amount, lines).
/// </summary>
/// <remarks>
/// <para>Checks, each reported with the ids involved:</para>
/// <list type="bullet">
/// <item><b>I1</b> a confirmed shipment has a coordinator record with a COMMIT decision; a participant's
/// tombstone never contradicts its coordinator's decision (a committed tombstone needs a commit decision);
/// a confirmed shipment holds the order's lines.</item>
/// <item><b>I4</b> a committed transaction's shipment is confirmed by that transaction (unless the shipment
/// still holds it prepared: then phase two is unfinished, reported under I5); an aborted transaction's
/// shipment is not confirmed by it.</item>
/// <item><b>I2</b> per SKU and account: Committed + ConsumedTotal == SuppliedTotal, and ConsumedTotal equals
/// the sum over the committed transactions that are applied there (those still prepared there are not).</item>
/// <item><b>I3</b> Committed is never negative; the open reservations never exceed it.</item>
/// <item><b>I5</b> no participant holds a prepared reservation; every decided transaction is completed.</item>
/// </list>
/// <para>Participants are read before coordinators: a participant can only apply a decision that is already
/// durable, so every effect seen in the participant snapshot has its coordinator record in the later read.</para>
/// </remarks>
public sealed class InvariantChecker
{
    /// <summary>Transaction ids are the order id with this prefix (see <c>TransactionIds.FromOrderId</c>).</summary>
    public const string TransactionIdPrefix = "tx-";

    private readonly StoredStateReader _reader;
    private readonly TimeProvider _time;

    public InvariantChecker(ServiceDatabases databases, InvariantCheckOptions? options = null, TimeProvider? time = null)
        : this(new StoredStateReader(databases ?? throw new ArgumentNullException(nameof(databases))), options, time)
    {
    }

    public InvariantChecker(StoredStateReader reader, InvariantCheckOptions? options = null, TimeProvider? time = null)
    {
        _reader = reader ?? throw new ArgumentNullException(nameof(reader));
        Options = options ?? InvariantCheckOptions.Everything;
        if (Options.AllowInFlight is { } allow && allow < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(options), allow, "AllowInFlight cannot be negative");
        }

        _time = time ?? TimeProvider.System;
    }

    public InvariantCheckOptions Options { get; }

    /// <summary>Reads all four databases and checks every invariant.</summary>
    public async Task<InvariantReport> CheckAsync(CancellationToken cancellationToken = default)
    {
        var snapshot = await ReadSnapshotAsync(cancellationToken).ConfigureAwait(false);
        return Evaluate(snapshot, Options);
    }

    /// <summary>
    /// Polls (cheaply, through the partial indexes) until nothing is left behind in scope (I5 as configured:
    /// no prepared reservation, no decided-but-unfinished transaction, beyond the in-flight allowance) or
    /// <paramref name="timeout"/> passes, then runs the full check. Recovery and phase two finish
    /// asynchronously, so call this after a test instead of <see cref="CheckAsync"/>.
    /// </summary>
    public async Task<InvariantReport> WaitUntilQuiescentAsync(
        TimeSpan timeout, TimeSpan? pollInterval = null, CancellationToken cancellationToken = default)
    {
        var interval = pollInterval ?? TimeSpan.FromMilliseconds(200);
        var stopwatch = Stopwatch.StartNew();
        bool quiescent;
        while (true)
        {
            quiescent = (await FindLeftoversAsync(cancellationToken).ConfigureAwait(false)).Count == 0;
            if (quiescent || stopwatch.Elapsed >= timeout)
            {
                break;
            }

            var left = timeout - stopwatch.Elapsed;
            await Task.Delay(left < interval ? left : interval, _time, cancellationToken).ConfigureAwait(false);
        }

        var report = await CheckAsync(cancellationToken).ConfigureAwait(false);
        return report with { Waited = stopwatch.Elapsed, ReachedQuiescence = quiescent };
    }

    /// <summary>The I5 violations only, read through the partial indexes (participants with prepared work,
    /// unfinished coordinator records): cheap enough to poll.</summary>
    public async Task<IReadOnlyList<InvariantViolation>> FindLeftoversAsync(CancellationToken cancellationToken = default)
    {
        var takenAt = _time.GetUtcNow();
        var inventory = _reader.InventoryAsync(withPreparedOnly: true, cancellationToken: cancellationToken);
        var payments = _reader.PaymentsAsync(withPreparedOnly: true, cancellationToken: cancellationToken);
        var shipments = _reader.ShipmentsAsync(withPreparedOnly: true, cancellationToken: cancellationToken);
        await Task.WhenAll(inventory, payments, shipments).ConfigureAwait(false);
        var coordinators = await _reader.CoordinatorsAsync(unfinishedOnly: true, cancellationToken: cancellationToken).ConfigureAwait(false);
        var snapshot = new InvariantSnapshot(takenAt, inventory.Result, payments.Result, shipments.Result, coordinators);
        return Evaluate(snapshot, Options).Of(InvariantCodes.NothingLeftBehind);
    }

    /// <summary>Reads the participants (all three databases in parallel), then the coordinator records.</summary>
    public async Task<InvariantSnapshot> ReadSnapshotAsync(CancellationToken cancellationToken = default)
    {
        var takenAt = _time.GetUtcNow();
        var inventory = _reader.InventoryAsync(withPreparedOnly: false, cancellationToken: cancellationToken);
        var payments = _reader.PaymentsAsync(withPreparedOnly: false, cancellationToken: cancellationToken);
        var shipments = _reader.ShipmentsAsync(withPreparedOnly: false, cancellationToken: cancellationToken);
        await Task.WhenAll(inventory, payments, shipments).ConfigureAwait(false);
        var coordinators = await _reader.CoordinatorsAsync(unfinishedOnly: false, cancellationToken: cancellationToken).ConfigureAwait(false);
        return new InvariantSnapshot(takenAt, inventory.Result, payments.Result, shipments.Result, coordinators);
    }

    /// <summary>Checks a snapshot; pure (no I/O, no clock: "now" is <see cref="InvariantSnapshot.TakenAt"/>).</summary>
    public static InvariantReport Evaluate(InvariantSnapshot snapshot, InvariantCheckOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        return new Evaluation(snapshot, options ?? InvariantCheckOptions.Everything).Run();
    }

    /// <summary>The order id a transaction id was derived from (the id itself if it has no <c>tx-</c> prefix).</summary>
    public static string OrderIdOf(string transactionId) =>
        transactionId.StartsWith(TransactionIdPrefix, StringComparison.Ordinal) ? transactionId[TransactionIdPrefix.Length..] : transactionId;

    private sealed class Evaluation
    {
        private readonly InvariantSnapshot _snapshot;
        private readonly InvariantCheckOptions _options;
        private readonly HashSet<string>? _skus;
        private readonly HashSet<string>? _accounts;
        private readonly DateTimeOffset _now;
        private readonly List<InvariantViolation> _violations = [];
        private readonly List<string> _notes = [];

        // Every record (for lookups from participants), and the decided ones in scope (the ones judged).
        private readonly Dictionary<string, CoordinatorRecord> _records = new(StringComparer.Ordinal);
        private readonly List<(string Tx, CoordinatorRecord Record)> _scoped = [];
        private readonly Dictionary<string, ParticipantRecord<ShipmentRecord, ShipmentDetails>> _shipments = new(StringComparer.Ordinal);

        public Evaluation(InvariantSnapshot snapshot, InvariantCheckOptions options)
        {
            _snapshot = snapshot;
            _options = options;
            _skus = options.Skus is null ? null : new HashSet<string>(options.Skus, StringComparer.Ordinal);
            _accounts = options.Accounts is null ? null : new HashSet<string>(options.Accounts, StringComparer.Ordinal);
            _now = snapshot.TakenAt;
        }

        public InvariantReport Run()
        {
            foreach (var stored in _snapshot.Coordinators)
            {
                // The grain key is the transaction id; the record repeats it.
                _records[stored.Key] = stored.State;
                if (OrderInScope(OrderIdOfRecord(stored.Key, stored.State)))
                {
                    _scoped.Add((stored.Key, stored.State));
                }
            }

            foreach (var stored in _snapshot.Shipments)
            {
                _shipments[stored.Key] = stored.State;
            }

            var committed = 0;
            var aborted = 0;
            var inFlight = 0;
            foreach (var (tx, record) in _scoped)
            {
                if (record.Decision == Decision.Commit) committed++;
                if (record.Decision == Decision.Abort) aborted++;
                if (InFlight(record)) inFlight++;
                CheckTransaction(tx, record);
            }

            var shipmentsChecked = CheckShipments();
            var (skus, unitsSold) = CheckCounters("inventory", "SKU", _snapshot.Inventory, SkuInScope, InventoryConsumption());
            var (accounts, charged) = CheckCounters("payment", "account", _snapshot.Payments, AccountInScope, PaymentConsumption());
            CheckUnfinishedTransactions();

            return new InvariantReport
            {
                CheckedAt = _now,
                AllowedInFlight = _options.AllowInFlight,
                TransactionsCommitted = committed,
                TransactionsAborted = aborted,
                TransactionsInFlight = inFlight,
                SkusChecked = skus,
                AccountsChecked = accounts,
                ShipmentsChecked = shipmentsChecked,
                UnitsSold = unitsSold,
                MoneyCharged = charged,
                Violations = _violations,
                Notes = _notes,
            };
        }

        // ---- I1 / I4: one transaction against its shipment --------------------------------------------

        private void CheckTransaction(string tx, CoordinatorRecord record)
        {
            if (!record.IsDecided)
            {
                return;
            }

            var orderId = ShipmentKeyOf(tx, record);
            _shipments.TryGetValue(orderId, out var shipment);
            var resource = shipment?.Resource;
            var confirmedByTx = resource is { Status: ShipmentStatus.Confirmed } && resource.TransactionId == tx;
            var shipmentName = $"shipment/{orderId}";

            if (record.Decision == Decision.Commit)
            {
                var pending = shipment?.Prepared.ContainsKey(tx) == true;
                if (!confirmedByTx && !pending && !InFlight(record))
                {
                    var state = resource is null ? "missing"
                        : resource.Status == ShipmentStatus.None ? "not created"
                        : $"{resource.Status}" + (resource.TransactionId is { } other && other != tx ? $" by {other}" : "");
                    Add(InvariantCodes.OutcomeApplied,
                        $"{tx} committed (decided {At(record.DecidedAt)}) but {shipmentName} is {state}",
                        tx, shipmentName);
                }

                if (confirmedByTx && record.Order is { } order)
                {
                    CheckShipmentContent(tx, order, resource!, shipmentName);
                }
            }
            else if (confirmedByTx)
            {
                Add(InvariantCodes.OutcomeApplied,
                    $"{tx} aborted ({record.AbortReason ?? "no reason recorded"}) but {shipmentName} is confirmed by it",
                    tx, shipmentName);
            }
        }

        private void CheckShipmentContent(string tx, OrderSummary order, ShipmentRecord shipment, string shipmentName)
        {
            var ordered = order.Lines.GroupBy(l => l.Sku, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => Total(g.Select(l => (Int128)l.Quantity)), StringComparer.Ordinal);
            var shipped = (shipment.Details?.Items ?? []).GroupBy(i => i.Sku, StringComparer.Ordinal)
                .ToDictionary(g => g.Key, g => Total(g.Select(i => (Int128)i.Quantity)), StringComparer.Ordinal);
            var same = ordered.Count == shipped.Count
                       && ordered.All(kv => shipped.TryGetValue(kv.Key, out var quantity) && quantity == kv.Value);
            if (!same)
            {
                Add(InvariantCodes.Atomicity,
                    $"{shipmentName} confirmed by {tx} ships [{Lines(shipped)}] but the order has [{Lines(ordered)}]",
                    tx, shipmentName);
            }
        }

        // ---- shipments: I1 (confirmed needs a commit), tombstones, I5 -----------------------------------

        private int CheckShipments()
        {
            var count = 0;
            foreach (var stored in _snapshot.Shipments)
            {
                if (!OrderInScope(stored.Key))
                {
                    continue;
                }

                count++;
                var name = $"shipment/{stored.Key}";
                var resource = stored.State.Resource;
                if (resource.Status == ShipmentStatus.Confirmed)
                {
                    var tx = resource.TransactionId;
                    CoordinatorRecord? record = null;
                    if (tx is not null)
                    {
                        _records.TryGetValue(tx, out record);
                    }

                    // A record with an Abort decision is reported by the transaction check (I4).
                    if (record is null || !record.IsDecided)
                    {
                        Add(InvariantCodes.Atomicity,
                            $"{name} is confirmed by {tx ?? "(no transaction)"} but no durable commit decision exists for it" +
                            (record is null ? " (no coordinator record)" : " (coordinator record has no decision)"),
                            name, tx ?? "");
                    }
                }

                CheckTombstones(name, stored.State.Decided);
                CheckPrepared(name, stored.State.Prepared.Select(p => (p.Key, p.Value.PreparedAt)));
            }

            return count;
        }

        // ---- counters: I2, I3, tombstones, I5 -----------------------------------------------------------

        private (int Count, Int128 Consumed) CheckCounters(
            string kind,
            string what,
            IReadOnlyList<StoredState<ParticipantRecord<EscrowCounter, long>>> rows,
            Func<string, bool> inScope,
            Consumption consumption)
        {
            var count = 0;
            Int128 consumed = 0;
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var stored in rows)
            {
                if (!inScope(stored.Key))
                {
                    continue;
                }

                count++;
                seen.Add(stored.Key);
                var name = $"{kind}/{stored.Key}";
                var record = stored.State;
                var counter = record.Resource;
                consumed += counter.ConsumedTotal;

                // I2: the row's own books balance (in 128 bits: stored values near the long range must not wrap).
                if ((Int128)counter.Committed + counter.ConsumedTotal != counter.SuppliedTotal)
                {
                    Add(InvariantCodes.Conservation,
                        $"{name}: committed {counter.Committed} + consumed {counter.ConsumedTotal} != supplied {counter.SuppliedTotal}",
                        name);
                }

                // I2: what was consumed is what the committed transactions applied here took.
                if (consumption.Unverifiable.Contains(stored.Key))
                {
                    _notes.Add($"{name}: consumption not checked, a committed transaction touching it has no order summary");
                }
                else
                {
                    Int128 definite = 0, pending = 0;
                    var contributors = new List<string>();
                    foreach (var (tx, amount, inFlight) in consumption.For(stored.Key))
                    {
                        // Still prepared here: phase two has not reached this participant (I5 reports it).
                        if (record.Prepared.ContainsKey(tx))
                        {
                            continue;
                        }

                        if (inFlight) pending += amount;
                        else definite += amount;
                        contributors.Add(tx);
                    }

                    if (counter.ConsumedTotal < definite || counter.ConsumedTotal > definite + pending)
                    {
                        var expected = pending == 0 ? $"{definite}" : $"between {definite} and {definite + pending}";
                        Add(InvariantCodes.Conservation,
                            $"{name}: consumed {counter.ConsumedTotal} but the committed transactions applied here took {expected}" +
                            $" ({contributors.Count} transaction{(contributors.Count == 1 ? "" : "s")})",
                            [name, .. contributors.Take(20)]);
                    }
                }

                // I3: never negative, never oversold.
                var reserved = Total(record.Prepared.Values.Select(p => (Int128)p.Work));
                if (counter.Committed < 0)
                {
                    Add(InvariantCodes.NoNegative, $"{name}: committed {(what == "SKU" ? "stock" : "balance")} is negative ({counter.Committed})", name);
                }
                else if (reserved > counter.Committed)
                {
                    Add(InvariantCodes.NoNegative,
                        $"{name}: oversold, {reserved} reserved by {record.Prepared.Count} open transaction{(record.Prepared.Count == 1 ? "" : "s")} but only {counter.Committed} committed",
                        [name, .. record.Prepared.Keys]);
                }

                CheckTombstones(name, record.Decided);
                CheckPrepared(name, record.Prepared.Select(p => (p.Key, p.Value.PreparedAt)));
            }

            // I2: committed transactions consumed from a counter that does not exist.
            foreach (var key in consumption.Keys.Where(k => inScope(k) && !seen.Contains(k)))
            {
                var parts = consumption.For(key).ToList();
                var definite = Total(parts.Where(p => !p.InFlight).Select(p => p.Amount));
                if (definite > 0)
                {
                    var name = $"{kind}/{key}";
                    Add(InvariantCodes.Conservation,
                        $"{name}: committed transactions took {definite} but the {kind} database has no record of this {what}",
                        [name, .. parts.Select(p => p.Tx).Take(20)]);
                }
            }

            return (count, consumed);
        }

        private Consumption InventoryConsumption() => BuildConsumption(
            ParticipantKind.Inventory,
            order => order.Lines.GroupBy(l => l.Sku, StringComparer.Ordinal).Select(g => (g.Key, Total(g.Select(l => (Int128)l.Quantity)))));

        private Consumption PaymentConsumption() => BuildConsumption(
            ParticipantKind.Payment,
            order => [(order.AccountId, (Int128)order.Amount)]);

        private Consumption BuildConsumption(ParticipantKind kind, Func<OrderSummary, IEnumerable<(string Key, Int128 Amount)>> take)
        {
            var consumption = new Consumption();
            foreach (var (tx, record) in _scoped)
            {
                if (record.Decision != Decision.Commit)
                {
                    continue;
                }

                if (record.Order is null)
                {
                    foreach (var participant in record.Participants)
                    {
                        if (TryParse(participant.Participant) is { } id && id.Kind == kind)
                        {
                            consumption.Unverifiable.Add(id.Key);
                        }
                    }

                    continue;
                }

                var inFlight = InFlight(record);
                foreach (var (key, amount) in take(record.Order))
                {
                    consumption.Add(key, tx, amount, inFlight);
                }
            }

            return consumption;
        }

        private sealed class Consumption
        {
            private readonly Dictionary<string, List<(string Tx, Int128 Amount, bool InFlight)>> _byKey = new(StringComparer.Ordinal);

            public HashSet<string> Unverifiable { get; } = new(StringComparer.Ordinal);

            public IEnumerable<string> Keys => _byKey.Keys;

            public void Add(string key, string tx, Int128 amount, bool inFlight)
            {
                if (!_byKey.TryGetValue(key, out var list))
                {
                    _byKey[key] = list = [];
                }

                list.Add((tx, amount, inFlight));
            }

            public IEnumerable<(string Tx, Int128 Amount, bool InFlight)> For(string key) =>
                _byKey.TryGetValue(key, out var list) ? list : [];
        }

        // ---- shared participant checks -----------------------------------------------------------------

        /// <summary>I1: a tombstone (when still present) agrees with the coordinator's durable decision.</summary>
        private void CheckTombstones(string participant, TombstoneMap decided)
        {
            foreach (var (tx, tombstone) in decided)
            {
                _records.TryGetValue(tx, out var record);
                if (record is { IsDecided: true } && record.Decision != tombstone.Outcome)
                {
                    Add(InvariantCodes.Atomicity,
                        $"{participant} applied {tombstone.Outcome} for {tx} at {At(tombstone.DecidedAt)} but its coordinator decided {record.Decision}",
                        participant, tx);
                }
                else if (record is not { IsDecided: true } && tombstone.Outcome == Decision.Commit)
                {
                    Add(InvariantCodes.Atomicity,
                        $"{participant} committed {tx} at {At(tombstone.DecidedAt)} but no durable commit decision exists for it",
                        participant, tx);
                }
            }
        }

        /// <summary>I5: no reservation is left prepared (beyond the in-flight allowance).</summary>
        private void CheckPrepared(string participant, IEnumerable<(string Tx, DateTimeOffset PreparedAt)> prepared)
        {
            foreach (var (tx, preparedAt) in prepared)
            {
                if (Young(preparedAt))
                {
                    continue;
                }

                _records.TryGetValue(tx, out var record);
                var why = record switch
                {
                    { Decision: Decision.Commit } => "its coordinator decided Commit, not applied here",
                    { Decision: Decision.Abort } => "its coordinator decided Abort, not released here",
                    _ => "no durable decision exists (in doubt)",
                };
                Add(InvariantCodes.NothingLeftBehind,
                    $"{participant} still holds {tx} prepared since {At(preparedAt)}: {why}",
                    participant, tx);
            }
        }

        /// <summary>I5: every decided transaction in scope is completed (beyond the in-flight allowance).</summary>
        private void CheckUnfinishedTransactions()
        {
            foreach (var (tx, record) in _scoped)
            {
                if (!record.IsDecided || record.IsCompleted || InFlight(record))
                {
                    continue;
                }

                var waiting = record.Participants.Where(p => !p.Acknowledged).Select(p => p.Participant).ToList();
                Add(InvariantCodes.NothingLeftBehind,
                    $"{tx} decided {record.Decision} at {At(record.DecidedAt)} but never completed" +
                    (waiting.Count > 0 ? $"; unacknowledged by {string.Join(", ", waiting)}" : ""),
                    [tx, .. waiting]);
            }
        }

        // ---- helpers ------------------------------------------------------------------------------------

        private bool Young(DateTimeOffset at) => _options.AllowInFlight is { } allow && at > _now - allow;

        /// <summary>Decided, not completed, and recent enough (or decided after the snapshot) to be in its phase two.</summary>
        private bool InFlight(CoordinatorRecord record) =>
            _options.AllowInFlight is not null && record.IsDecided && !record.IsCompleted
            && (record.DecidedAt is not { } decidedAt || Young(decidedAt));

        private bool SkuInScope(string sku) => _skus is null || _skus.Contains(sku);

        private bool AccountInScope(string account) => _accounts is null || _accounts.Contains(account);

        private bool OrderInScope(string orderId) =>
            _options.OrderIdPrefix is null || orderId.StartsWith(_options.OrderIdPrefix, StringComparison.Ordinal);

        private static string OrderIdOfRecord(string tx, CoordinatorRecord record) =>
            record.Order?.OrderId is { Length: > 0 } orderId ? orderId : OrderIdOf(tx);

        private static string ShipmentKeyOf(string tx, CoordinatorRecord record)
        {
            if (record.Order?.OrderId is { Length: > 0 } orderId)
            {
                return orderId;
            }

            foreach (var participant in record.Participants)
            {
                if (TryParse(participant.Participant) is { Kind: ParticipantKind.Shipment } id)
                {
                    return id.Key;
                }
            }

            return OrderIdOf(tx);
        }

        private static ParticipantId? TryParse(string text)
        {
            try
            {
                return ParticipantId.Parse(text);
            }
            catch (FormatException)
            {
                return null;
            }
        }

        /// <summary>A sum of stored amounts: each fits a long, their total need not.</summary>
        private static Int128 Total(IEnumerable<Int128> amounts)
        {
            Int128 total = 0;
            foreach (var amount in amounts)
            {
                total += amount;
            }

            return total;
        }

        private void Add(string code, string message, params string[] ids) =>
            _violations.Add(new InvariantViolation(code, message, ids.Where(id => id.Length > 0).ToArray()));

        private static string At(DateTimeOffset? at) =>
            at is { } value ? value.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture) : "(unknown time)";

        private static string Lines(Dictionary<string, Int128> lines) =>
            string.Join(", ", lines.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => $"{kv.Key} x{kv.Value}"));
    }
}
