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

    // Attribute names, namespaced as OpenTelemetry's conventions ask.
    public const string TransactionTag = "twopc.transaction_id";
    public const string OutcomeTag = "twopc.outcome";
    public const string ReasonTag = "twopc.abort.reason";
    public const string DecisionTag = "twopc.decision";
    public const string ParticipantTag = "twopc.participant";

    // Values of the outcome attribute of the transactions counter.
    public const string OutcomeCommitted = "committed";
    public const string OutcomeAborted = "aborted";
    public const string OutcomeInDoubt = "in_doubt";
    public const string OutcomeRejected = "rejected";

    // Abort reasons (values of the "twopc.abort.reason" attribute).
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

    // Buckets for durations in seconds, from a fast single-database order (a few ms) to a prepare timeout.
    private static readonly InstrumentAdvice<double> SecondsBuckets = new()
    {
        HistogramBucketBoundaries = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    };

    public static readonly Counter<long> Started = Meter.CreateCounter<long>("twopc.transactions.started", unit: "{transaction}", description: "Transactions that completed phase one (every vote in or the prepare deadline passed), whatever the decision; rejected orders are not counted");
    public static readonly Counter<long> Transactions = Meter.CreateCounter<long>("twopc.transactions", unit: "{transaction}", description: "Orders by how they ended for the caller, attribute twopc.outcome: committed or aborted (decision durable; aborts with twopc.abort.reason), in_doubt (the decision write failed; recovery finishes it) or rejected (invalid, a conflicting resubmission, or an unknown SKU or account: no transaction started)");
    public static readonly Counter<long> PhaseTwoRetries = Meter.CreateCounter<long>("twopc.phase2.retries", unit: "{delivery}", description: "Failed phase-two deliveries that will be retried");
    public static readonly Counter<long> RecoveryRuns = Meter.CreateCounter<long>("twopc.recovery.runs", unit: "{sweep}", description: "Recovery sweeps run");
    public static readonly Counter<long> RecoveryResolved = Meter.CreateCounter<long>("twopc.recovery.resolved", unit: "{transaction}", description: "In-doubt participant transactions settled by recovery");

    public static readonly Histogram<double> PrepareDuration = Meter.CreateHistogram("twopc.prepare.duration", unit: "s", description: "Phase one: from the first prepare to the decision", tags: null, advice: SecondsBuckets);
    public static readonly Histogram<double> DecisionWriteDuration = Meter.CreateHistogram("twopc.decision_write.duration", unit: "s", description: "Durable write of the decision record", tags: null, advice: SecondsBuckets);
    public static readonly Histogram<double> TransactionDuration = Meter.CreateHistogram("twopc.transaction.duration", unit: "s", description: "From begin to the reply to the client", tags: null, advice: SecondsBuckets);

    public static void RecordCommitted() => Transactions.Add(1, new KeyValuePair<string, object?>(OutcomeTag, OutcomeCommitted));

    public static void RecordInDoubt() => Transactions.Add(1, new KeyValuePair<string, object?>(OutcomeTag, OutcomeInDoubt));

    public static void RecordRejected() => Transactions.Add(1, new KeyValuePair<string, object?>(OutcomeTag, OutcomeRejected));

    /// <summary>Records a durable abort with its reason category.</summary>
    public static void RecordAborted(string? abortReason)
    {
        if (Transactions.Enabled)
            Transactions.Add(1, new KeyValuePair<string, object?>(OutcomeTag, OutcomeAborted), new KeyValuePair<string, object?>(ReasonTag, ClassifyAbortReason(abortReason)));
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

    /// <summary>Seconds since a <see cref="Stopwatch.GetTimestamp"/> value (durations are recorded in seconds).</summary>
    public static double ElapsedSeconds(long startTimestamp) => Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds;
}
