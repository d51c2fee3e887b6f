using OrleansTwoPC.Grains.Placement;
using Microsoft.Extensions.Logging;
using OrleansTwoPC.Grains.Errors;

namespace OrleansTwoPC.Grains.Recovery;

/// <summary>Operators' entry point (key 0): list, inspect, recover, and heuristically abort transactions.</summary>
[ServiceRolePlacement(ServiceRoles.Coordinator)]
public sealed class TransactionAdminGrain(
    IRecoveryCatalog catalog,
    RecoverySweeper sweeper,
    ILogger<TransactionAdminGrain> logger) : Grain, ITransactionAdminGrain
{
    public Task<IReadOnlyList<UnfinishedTransaction>> ListUnfinished() => catalog.ListUnfinishedAsync();

    public Task<TransactionTimeline> GetTimeline(string transactionId) => catalog.TimelineAsync(Normalize(transactionId));

    public Task<RecoveryReport> RecoverAll()
    {
        logger.LogInformation("Operator: recover all");
        return sweeper.SweepAsync(TimeSpan.Zero, TimeSpan.Zero);
    }

    public Task<RecoveryReport> Recover(string transactionId)
    {
        var tx = Normalize(transactionId);
        logger.LogInformation("Operator: recover {TransactionId}", tx);
        return sweeper.SweepAsync(TimeSpan.Zero, TimeSpan.Zero, tx);
    }

    public async Task<TransactionReport> HeuristicAbort(string transactionId, string reason)
    {
        var tx = Normalize(transactionId);
        logger.LogWarning("Operator: heuristic abort of {TransactionId} requested ({Reason})", tx, reason);
        var report = await GrainFactory.GetGrain<ITransactionCoordinatorGrain>(tx).HeuristicAbort(reason);
        // Tell whoever holds it prepared now rather than at their next in-doubt timeout. The abort is durable
        // already: a sweep that fails (a database down) must not make the operator believe it was refused.
        try
        {
            await sweeper.SweepAsync(TimeSpan.Zero, TimeSpan.Zero, tx);
        }
        catch (Exception ex)
        {
            logger.LogWarning("Operator: heuristic abort of {TransactionId} is durable; telling its participants now failed, recovery will: {Error}",
                tx, ContractErrors.Describe(ex));
        }

        return report;
    }

    /// <summary>Operators may give an order id or a transaction id.</summary>
    private static string Normalize(string id)
    {
        if (string.IsNullOrWhiteSpace(id)) throw new ArgumentException("a transaction or order id is required");
        id = id.Trim();
        return id.StartsWith("tx-", StringComparison.Ordinal) ? id : TransactionIds.FromOrderId(id);
    }
}
