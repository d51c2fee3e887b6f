using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace OrleansTwoPC.Grains.Telemetry;

/// <summary>
/// The transaction manager's OpenTelemetry-compatible instruments and activity source. Both are plain
/// <c>System.Diagnostics</c> types: without a listener (an OpenTelemetry provider, a <see cref="MeterListener"/>
/// or an <see cref="ActivityListener"/>) every call is a cheap no-op, so the hot path pays nothing.
/// </summary>
public static class TwoPcTelemetry
{
    public const string MeterName = "OrleansTwoPC";
    public const string ActivitySourceName = "OrleansTwoPC";

    // Activity names.
    public const string TransactionActivity = "twopc.transaction";
    public const string PrepareActivity = "twopc.prepare";
    public const string DecisionActivity = "twopc.decision";
    public const string PhaseTwoActivity = "twopc.phase2";
    public const string ParticipantPrepareActivity = "twopc.participant.prepare";

    // Tag names.
    public const string TransactionTag = "twopc.transaction_id";
    public const string ReasonTag = "reason";
    public const string DecisionTag = "decision";
    public const string ParticipantTag = "twopc.participant";

    // Abort reasons (values of the "reason" tag).
    public const string ReasonInsufficientStock = "insufficient_stock";
    public const string ReasonInsufficientFunds = "insufficient_funds";
    public const string ReasonPrepareTimeout = "prepare_timeout";
    public const string ReasonParticipantFailure = "participant_failure";
    public const string ReasonVoteNo = "vote_no";
    public const string ReasonPresumedAbort = "presumed_abort";
    public const string ReasonHeuristic = "heuristic";
    public const string ReasonOther = "other";

    public static readonly Meter Meter = new(MeterName);
    public static readonly ActivitySource ActivitySource = new(ActivitySourceName);

    public static readonly Counter<long> Started = Meter.CreateCounter<long>("twopc.transactions.started", description: "Transactions that completed phase one (every vote in or the prepare deadline passed), whatever the decision; rejected orders are not counted");
    public static readonly Counter<long> Committed = Meter.CreateCounter<long>("twopc.transactions.committed", description: "Transactions whose commit decision was made durable");
    public static readonly Counter<long> Aborted = Meter.CreateCounter<long>("twopc.transactions.aborted", description: "Transactions whose abort decision was made durable, by reason");
    public static readonly Counter<long> InDoubt = Meter.CreateCounter<long>("twopc.transactions.in_doubt", description: "Decision writes that failed (outcome in doubt until recovery)");
    public static readonly Counter<long> Rejected = Meter.CreateCounter<long>("twopc.transactions.rejected", description: "Orders rejected without a decision: invalid, conflicting resubmission (before any prepare), or naming an unknown SKU or account (after the prepares, which are rolled back)");
    public static readonly Counter<long> PhaseTwoRetries = Meter.CreateCounter<long>("twopc.phase2.retries", description: "Failed phase-two deliveries that will be retried");
    public static readonly Counter<long> RecoveryRuns = Meter.CreateCounter<long>("twopc.recovery.runs", description: "Recovery sweeps run");
    public static readonly Counter<long> RecoveryResolved = Meter.CreateCounter<long>("twopc.recovery.resolved", description: "In-doubt participant transactions settled by recovery");

    public static readonly Histogram<double> PrepareDuration = Meter.CreateHistogram<double>("twopc.phase.prepare.duration", unit: "ms", description: "Phase one: from the first prepare to the decision");
    public static readonly Histogram<double> DecisionWriteDuration = Meter.CreateHistogram<double>("twopc.phase.decision_write.duration", unit: "ms", description: "Durable write of the decision record");
    public static readonly Histogram<double> TransactionDuration = Meter.CreateHistogram<double>("twopc.transaction.duration", unit: "ms", description: "From begin to the reply to the client");

    /// <summary>Records a durable abort with its reason category.</summary>
    public static void RecordAborted(string? abortReason)
    {
        if (Aborted.Enabled) Aborted.Add(1, new KeyValuePair<string, object?>(ReasonTag, ClassifyAbortReason(abortReason)));
    }

    /// <summary>Maps the coordinator's free-text abort reason to a small, bounded set of tag values.</summary>
    public static string ClassifyAbortReason(string? reason)
    {
        if (string.IsNullOrEmpty(reason)) return ReasonOther;
        if (reason.Contains("insufficient stock", StringComparison.OrdinalIgnoreCase)) return ReasonInsufficientStock;
        if (reason.Contains("insufficient funds", StringComparison.OrdinalIgnoreCase)) return ReasonInsufficientFunds;
        if (reason.Contains("heuristic", StringComparison.OrdinalIgnoreCase)) return ReasonHeuristic;
        if (reason.Contains("presumed abort", StringComparison.OrdinalIgnoreCase)) return ReasonPresumedAbort;
        if (reason.Contains("timed out", StringComparison.OrdinalIgnoreCase)) return ReasonPrepareTimeout;
        if (reason.Contains("failed to prepare", StringComparison.OrdinalIgnoreCase)) return ReasonParticipantFailure;
        if (reason.Contains("voted no", StringComparison.OrdinalIgnoreCase)) return ReasonVoteNo;
        return ReasonOther;
    }

    /// <summary>Milliseconds since a <see cref="Stopwatch.GetTimestamp"/> value.</summary>
    public static double ElapsedMs(long startTimestamp) => Stopwatch.GetElapsedTime(startTimestamp).TotalMilliseconds;
}
