using Npgsql;
using OrleansTwoPC.Benchmark.Workloads;

namespace OrleansTwoPC.Benchmark.Systems.C;

/// <summary>
/// System C, the ceiling without distribution: one PostgreSQL transaction per order on pooled Npgsql
/// connections — conditional stock decrement, conditional debit, shipment insert — rolled back when a
/// condition fails. Row locks order concurrent orders; PostgreSQL's group commit shares the fsyncs.
/// </summary>
public sealed class SingleDatabaseSystem : IOrderSystem
{
    private const string ReserveSql = "UPDATE inventory.stock SET on_hand = on_hand - @quantity WHERE sku = @sku AND on_hand >= @quantity";
    private const string DebitSql = "UPDATE payments.account SET balance = balance - @amount WHERE account = @account AND balance >= @amount";
    private const string ShipSql = "INSERT INTO shipping.shipment (order_id, account, sku, quantity, amount, address) VALUES (@order, @account, @sku, @quantity, @amount, @address)";

    /// <summary>Pooled through Npgsql's global pool manager, so the harness can close idle connections between runs.</summary>
    private readonly string _pooledConnectionString;

    /// <param name="maxConcurrency">The pool holds one connection per concurrent caller: callers never queue for one.</param>
    public SingleDatabaseSystem(string connectionString, int maxConcurrency)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString)
        {
            MaxPoolSize = maxConcurrency + 2,
            // Server-side prepared statements for the three hot statements: the ceiling should not re-plan.
            MaxAutoPrepare = 8,
            AutoPrepareMinUsages = 2,
        };
        _pooledConnectionString = builder.ConnectionString;
    }

    public string Id => "C";
    public string Description => "One PostgreSQL transaction per order (Npgsql, pooled connections): conditional stock decrement, conditional debit, shipment insert in one database";
    public IReadOnlyList<string> Databases => [_pooledConnectionString];

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand(ReadSchema(), connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task SeedAsync(Catalogue catalogue, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await using (var stock = new NpgsqlCommand("INSERT INTO inventory.stock (sku, on_hand) SELECT * FROM unnest(@skus, @units)", connection, transaction))
        {
            stock.Parameters.AddWithValue("skus", catalogue.SeededStock.Keys.ToArray());
            stock.Parameters.AddWithValue("units", catalogue.SeededStock.Values.ToArray());
            await stock.ExecuteNonQueryAsync(cancellationToken);
        }
        await using (var accounts = new NpgsqlCommand("INSERT INTO payments.account (account, balance) SELECT * FROM unnest(@accounts, @balances)", connection, transaction))
        {
            accounts.Parameters.AddWithValue("accounts", catalogue.SeededBalances.Keys.ToArray());
            accounts.Parameters.AddWithValue("balances", catalogue.SeededBalances.Values.ToArray());
            await accounts.ExecuteNonQueryAsync(cancellationToken);
        }
        await transaction.CommitAsync(cancellationToken);
    }

    public async Task<OrderAttempt> PlaceAsync(BenchOrder order)
    {
        try
        {
            await using var connection = await OpenAsync(CancellationToken.None);
            await using var transaction = await connection.BeginTransactionAsync();
            // Stock first, then the account, in every order: the same lock order everywhere, so no deadlock cycles.
            await using (var reserve = new NpgsqlCommand(ReserveSql, connection, transaction))
            {
                reserve.Parameters.AddWithValue("quantity", (long)order.Quantity);
                reserve.Parameters.AddWithValue("sku", order.Sku);
                if (await reserve.ExecuteNonQueryAsync() == 0)
                {
                    await transaction.RollbackAsync();
                    return OrderAttempt.Aborted($"insufficient stock of {order.Sku}");
                }
            }
            await using (var debit = new NpgsqlCommand(DebitSql, connection, transaction))
            {
                debit.Parameters.AddWithValue("amount", order.Amount);
                debit.Parameters.AddWithValue("account", order.Account);
                if (await debit.ExecuteNonQueryAsync() == 0)
                {
                    await transaction.RollbackAsync();
                    return OrderAttempt.Aborted($"insufficient funds in {order.Account}");
                }
            }
            await using (var ship = new NpgsqlCommand(ShipSql, connection, transaction))
            {
                ship.Parameters.AddWithValue("order", order.OrderId);
                ship.Parameters.AddWithValue("account", order.Account);
                ship.Parameters.AddWithValue("sku", order.Sku);
                ship.Parameters.AddWithValue("quantity", order.Quantity);
                ship.Parameters.AddWithValue("amount", order.Amount);
                ship.Parameters.AddWithValue("address", order.Address);
                await ship.ExecuteNonQueryAsync();
            }
            await transaction.CommitAsync();
            return OrderAttempt.Committed;
        }
        catch (Exception ex)
        {
            return OrderAttempt.Failed(ex);
        }
    }

    /// <summary>Nothing is ever half-finished: a transaction commits or rolls back before the caller's answer.</summary>
    public Task<bool> WaitUntilSettledAsync(TimeSpan timeout, CancellationToken cancellationToken) => Task.FromResult(true);

    public async Task<StoredSnapshot> ReadStoredStateAsync(Catalogue catalogue, string orderIdPrefix, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        var stock = await ReadPairsAsync(connection, "SELECT sku, on_hand FROM inventory.stock", cancellationToken);
        var balances = await ReadPairsAsync(connection, "SELECT account, balance FROM payments.account", cancellationToken);
        var shipped = new HashSet<string>(StringComparer.Ordinal);
        await using var command = new NpgsqlCommand("SELECT order_id FROM shipping.shipment WHERE starts_with(order_id, @prefix)", connection);
        command.Parameters.AddWithValue("prefix", orderIdPrefix);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken)) shipped.Add(reader.GetString(0));
        return new StoredSnapshot(stock, balances, shipped);
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private async Task<NpgsqlConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new NpgsqlConnection(_pooledConnectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    private static async Task<Dictionary<string, long>> ReadPairsAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        var result = new Dictionary<string, long>(StringComparer.Ordinal);
        await using var command = new NpgsqlCommand(sql, connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken)) result[reader.GetString(0)] = reader.GetInt64(1);
        return result;
    }

    private static string ReadSchema()
    {
        var assembly = typeof(SingleDatabaseSystem).Assembly;
        var name = assembly.GetManifestResourceNames().Single(n => n.EndsWith("Systems.C.schema.sql", StringComparison.Ordinal));
        using var stream = assembly.GetManifestResourceStream(name)!;
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }
}
