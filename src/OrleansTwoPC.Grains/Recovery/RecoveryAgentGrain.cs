using OrleansTwoPC.Grains.Placement;
using Orleans.Runtime;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using OrleansTwoPC.Protocol;

namespace OrleansTwoPC.Grains.Recovery;

/// <summary>
/// One per cluster (key 0). Its grain reminder lives in PostgreSQL and fires on whichever silo is alive,
/// so unfinished transactions are found and finished after any silo's death without a per-transaction
/// reminder (which would cost two writes per transaction).
/// </summary>
[ServiceRolePlacement(ServiceRoles.Coordinator)]
public sealed class RecoveryAgentGrain(
    RecoverySweeper sweeper,
    IOptions<RecoveryOptions> recovery,
    IOptions<ProtocolOptions> protocol,
    ILogger<RecoveryAgentGrain> logger) : Grain, IRecoveryAgentGrain, IRemindable
{
    public const string ReminderName = "recovery-sweep";

    /// <summary>
    /// Registers the sweep reminder with the configured period, replacing the one stored in PostgreSQL, so a
    /// changed <see cref="RecoveryOptions.SweepInterval"/> takes effect when a coordinator silo starts.
    /// </summary>
    public async Task EnsureScheduled()
    {
        var interval = recovery.Value.SweepInterval;
        await this.RegisterOrUpdateReminder(ReminderName, interval, interval);
        logger.LogInformation("Recovery sweep reminder registered, every {Interval}", interval);
    }

    public Task<RecoveryReport> SweepNow() => sweeper.SweepAsync(TimeSpan.Zero, TimeSpan.Zero);

    public async Task ReceiveReminder(string reminderName, TickStatus status)
    {
        if (reminderName != ReminderName) return;
        logger.LogDebug("Recovery reminder tick at {Now:O}", status.CurrentTickTime);
        await sweeper.SweepAsync(recovery.Value.CoordinatorGrace, protocol.Value.InDoubtTimeout);
    }
}
