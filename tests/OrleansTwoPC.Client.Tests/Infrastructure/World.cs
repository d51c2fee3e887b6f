using System.Text.Json;
using Npgsql;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;
using OrleansTwoPC.Protocol.Participant;
using OrleansTwoPC.Protocol.Resources;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Client.Tests.Infrastructure;

/// <summary>
/// Grain state as the silo would have left it, built in memory and written as crafted rows into
/// <c>orleansstorage</c> of the four service databases (JSON in <see cref="StateJson"/> format). Tests start
/// from <see cref="Consistent"/>, break one thing, write, and run the checker.
/// </summary>
public sealed class World
{
    public World(DateTimeOffset now) => Now = now;

    public DateTimeOffset Now { get; }

    public Dictionary<string, ParticipantRecord<EscrowCounter, long>> Inventory { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, ParticipantRecord<EscrowCounter, long>> Payments { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, ParticipantRecord<ShipmentRecord, ShipmentDetails>> Shipments { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, CoordinatorRecord> Coordinators { get; } = new(StringComparer.Ordinal);

    /// <summary>
    /// SKU-A (10 supplied) and SKU-B (5), account acct-1 (10000); o-1 committed (SKU-A x2, SKU-B x1 for 2500),
    /// o-2 aborted (SKU-A x20, stock refused), tx-o-3 a presumed abort. Everything finished an hour ago.
    /// </summary>
    public static World Consistent(DateTimeOffset now)
    {
        var world = new World(now);
        world.Seed("SKU-A", 10).Seed("SKU-B", 5).Open("acct-1", 10_000);
        world.CommitOrder("o-1", "acct-1", now.AddHours(-1), ("SKU-A", 2, 1000), ("SKU-B", 1, 500));
        world.AbortOrder("o-2", "acct-1", now.AddMinutes(-59), "inventory/SKU-A voted no: insufficient stock", ("SKU-A", 20, 1000));
        world.PresumedAbort("tx-o-3", now.AddMinutes(-58));
        return world;
    }

    public ParticipantRecord<EscrowCounter, long> Sku(string sku) => Inventory[sku];
    public ParticipantRecord<EscrowCounter, long> Account(string account) => Payments[account];
    public ParticipantRecord<ShipmentRecord, ShipmentDetails> Shipment(string orderId) => Shipments[orderId];
    public CoordinatorRecord Transaction(string transactionId) => Coordinators[transactionId];

    public World Seed(string sku, long units)
    {
        Inventory[sku] = NewCounter(units);
        return this;
    }

    public World Open(string account, long balance)
    {
        Payments[account] = NewCounter(balance);
        return this;
    }

    /// <summary>A committed order as a finished phase two leaves it: applied everywhere, tombstones, completed record.</summary>
    public CoordinatorRecord CommitOrder(string orderId, string account, DateTimeOffset decidedAt, params (string Sku, int Quantity, long Price)[] lines)
    {
        var tx = "tx-" + orderId;
        var record = NewRecord(tx, orderId, account, decidedAt, Decision.Commit, null, lines);
        foreach (var (sku, quantity, _) in lines)
        {
            Consume(Inventory[sku], tx, quantity, decidedAt);
        }

        Consume(Payments[account], tx, record.Order!.Amount, decidedAt);
        var shipment = ShipmentOf(orderId);
        shipment.Resource = new ShipmentRecord
        {
            Status = ShipmentStatus.Confirmed,
            Details = Details(orderId, lines),
            TransactionId = tx,
            ChangedAt = decidedAt,
        };
        shipment.Decided[tx] = Tombstone(Decision.Commit, decidedAt);
        return record;
    }

    /// <summary>An aborted order after its rollbacks: nothing applied, tombstones, cancelled shipment.</summary>
    public CoordinatorRecord AbortOrder(string orderId, string account, DateTimeOffset decidedAt, string reason, params (string Sku, int Quantity, long Price)[] lines)
    {
        var tx = "tx-" + orderId;
        var record = NewRecord(tx, orderId, account, decidedAt, Decision.Abort, reason, lines);
        foreach (var (sku, _, _) in lines)
        {
            Inventory[sku].Decided[tx] = Tombstone(Decision.Abort, decidedAt);
        }

        Payments[account].Decided[tx] = Tombstone(Decision.Abort, decidedAt);
        var shipment = ShipmentOf(orderId);
        shipment.Resource = new ShipmentRecord
        {
            Status = ShipmentStatus.Cancelled,
            Details = Details(orderId, lines),
            TransactionId = tx,
            ChangedAt = decidedAt,
        };
        shipment.Decided[tx] = Tombstone(Decision.Abort, decidedAt);
        return record;
    }

    /// <summary>The record an inquiry about an unknown transaction leaves: abort, no order, nothing else.</summary>
    public CoordinatorRecord PresumedAbort(string transactionId, DateTimeOffset at)
    {
        var record = new CoordinatorRecord
        {
            TransactionId = transactionId,
            Decision = Decision.Abort,
            AbortReason = "presumed abort: the coordinator has no record of this transaction",
            StartedAt = at,
            DecidedAt = at,
            CompletedAt = at,
            PresumedAbort = true,
        };
        Coordinators[transactionId] = record;
        return record;
    }

    public static PreparedTransaction<T> Prepared<T>(string transactionId, T work, DateTimeOffset at) => new()
    {
        Work = work,
        Coordinator = transactionId,
        PreparedAt = at,
        Deadline = at.AddSeconds(5),
    };

    public static ShipmentDetails Details(string orderId, params (string Sku, int Quantity, long Price)[] lines) => new()
    {
        OrderId = orderId,
        Address = "1 Main St",
        Items = lines.Select(l => new ShipmentItem { Sku = l.Sku, Quantity = l.Quantity }).ToList(),
    };

    public static DecidedTransaction Tombstone(Decision outcome, DateTimeOffset at) => new()
    {
        Outcome = outcome,
        DecidedAt = at,
        Deadline = at.AddSeconds(5),
        KeepUntil = at.AddHours(1),
    };

    /// <summary>Writes every record (upsert: a second write replaces the row and bumps its version).</summary>
    public async Task WriteAsync(ServiceDatabases databases)
    {
        foreach (var (key, state) in Inventory) await WriteStateAsync(databases.Inventory, StateNames.Inventory, key, state);
        foreach (var (key, state) in Payments) await WriteStateAsync(databases.Payments, StateNames.Payment, key, state);
        foreach (var (key, state) in Shipments) await WriteStateAsync(databases.Shipping, StateNames.Shipment, key, state);
        foreach (var (key, state) in Coordinators) await WriteStateAsync(databases.Coordinator, StateNames.Coordinator, key, state);
    }

    /// <summary>One grain-state row, as the ADO.NET provider keys a string-keyed grain (key in the extension string).</summary>
    public static async Task WriteStateAsync<T>(string connectionString, string stateName, string key, T state)
    {
        const string sql =
            "INSERT INTO orleansstorage (grainidhash, grainidn0, grainidn1, graintypehash, graintypestring, grainidextensionstring, serviceid, payloadbinary, version) " +
            "VALUES (@hash, 0, 0, 0, @state, @key, 'client-tests', @payload, 1) " +
            "ON CONFLICT (grainidhash, graintypehash, serviceid, grainidn0, grainidn1, graintypestring, grainidextensionstring) " +
            "DO UPDATE SET payloadbinary = EXCLUDED.payloadbinary, version = orleansstorage.version + 1, modifiedon = now()";
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        command.Parameters.AddWithValue("hash", StableHash(key));
        command.Parameters.AddWithValue("state", stateName);
        command.Parameters.AddWithValue("key", StoredGrainKey.Encode(key));
        command.Parameters.AddWithValue("payload", JsonSerializer.SerializeToUtf8Bytes(state, StateJson.Options));
        await command.ExecuteNonQueryAsync();
    }

    private static int StableHash(string key)
    {
        unchecked
        {
            var hash = (int)2166136261;
            foreach (var c in key)
            {
                hash = (hash ^ c) * 16777619;
            }

            return hash;
        }
    }

    private static ParticipantRecord<EscrowCounter, long> NewCounter(long supplied)
    {
        var record = new ParticipantRecord<EscrowCounter, long>();
        record.Resource.SetByAdministrator(supplied);
        return record;
    }

    private ParticipantRecord<ShipmentRecord, ShipmentDetails> ShipmentOf(string orderId)
    {
        if (!Shipments.TryGetValue(orderId, out var shipment))
        {
            Shipments[orderId] = shipment = new ParticipantRecord<ShipmentRecord, ShipmentDetails>();
        }

        return shipment;
    }

    private static void Consume(ParticipantRecord<EscrowCounter, long> counter, string tx, long amount, DateTimeOffset at)
    {
        counter.Resource.Committed -= amount;
        counter.Resource.ConsumedTotal += amount;
        counter.Decided[tx] = Tombstone(Decision.Commit, at);
    }

    private CoordinatorRecord NewRecord(
        string tx, string orderId, string account, DateTimeOffset decidedAt, Decision decision, string? reason,
        (string Sku, int Quantity, long Price)[] lines)
    {
        var participants = lines.Select(l => $"inventory/{l.Sku}").Append($"payment/{account}").Append($"shipment/{orderId}");
        var record = new CoordinatorRecord
        {
            TransactionId = tx,
            Fingerprint = "F-" + orderId,
            Decision = decision,
            AbortReason = reason,
            Order = new OrderSummary
            {
                OrderId = orderId,
                AccountId = account,
                Amount = lines.Sum(l => l.Quantity * l.Price),
                Lines = lines.Select(l => new OrderSummaryLine { Sku = l.Sku, Quantity = l.Quantity }).ToList(),
            },
            Participants = participants.Select(p => new ParticipantEntry
            {
                Participant = p,
                Vote = decision == Decision.Commit ? Vote.Yes : null,
                Source = decision == Decision.Commit ? VoteSource.Voted : VoteSource.Pending,
                Acknowledged = true,
            }).ToList(),
            StartedAt = decidedAt.AddMilliseconds(-50),
            PrepareDeadline = decidedAt.AddSeconds(5),
            DecidedAt = decidedAt,
            CompletedAt = decidedAt.AddMilliseconds(20),
        };
        Coordinators[tx] = record;
        return record;
    }
}
