namespace OrleansTwoPC.Abstractions;

/// <summary>A transaction that is not finished: decided but not every participant acknowledged, or
/// prepared somewhere with no durable decision yet (in doubt).</summary>
[GenerateSerializer, Immutable, Alias("twopc.UnfinishedTransaction")]
public sealed record UnfinishedTransaction(
    [property: Id(0)] string TransactionId,
    [property: Id(1)] string State,
    [property: Id(2)] string Decision,
    [property: Id(3)] TimeSpan Age,
    [property: Id(4)] IReadOnlyList<ParticipantVote> Participants);

[GenerateSerializer, Immutable, Alias("twopc.TimelineEvent")]
public sealed record TimelineEvent(
    [property: Id(0)] DateTimeOffset At,
    [property: Id(1)] string Source,
    [property: Id(2)] string What);

/// <summary>Everything the databases know about one transaction, in time order.</summary>
[GenerateSerializer, Immutable, Alias("twopc.TransactionTimeline")]
public sealed record TransactionTimeline(
    [property: Id(0)] string TransactionId,
    [property: Id(1)] bool Known,
    [property: Id(2)] string Decision,
    [property: Id(3)] IReadOnlyList<TimelineEvent> Events);

[GenerateSerializer, Immutable, Alias("twopc.RecoveryReport")]
public sealed record RecoveryReport(
    [property: Id(0)] int CoordinatorsResumed,
    [property: Id(1)] int ParticipantsAsked,
    [property: Id(2)] int InDoubtResolved,
    [property: Id(3)] IReadOnlyList<string> Errors);

/// <summary>Operators' view and controls (console: <c>in-doubt</c>, <c>tx</c>, <c>recover</c>, <c>abort</c>).</summary>
[Alias("twopc.ITransactionAdminGrain")]
public interface ITransactionAdminGrain : IGrainWithIntegerKey
{
    Task<IReadOnlyList<UnfinishedTransaction>> ListUnfinished();
    Task<TransactionTimeline> GetTimeline(string transactionId);

    /// <summary>Runs a recovery sweep now, without waiting for the in-doubt timeout.</summary>
    Task<RecoveryReport> RecoverAll();

    Task<RecoveryReport> Recover(string transactionId);

    /// <summary>Forces ABORT on a transaction with no durable decision (a heuristic decision, logged as
    /// such). Refused for a committed transaction.</summary>
    Task<TransactionReport> HeuristicAbort(string transactionId, string reason);
}

/// <summary>Wakes up on a grain reminder (surviving any silo's death) and sweeps for unfinished work.</summary>
[Alias("twopc.IRecoveryAgentGrain")]
public interface IRecoveryAgentGrain : IGrainWithIntegerKey
{
    /// <summary>Registers the sweep reminder with the configured period (called when a coordinator silo starts).</summary>
    Task EnsureScheduled();

    Task<RecoveryReport> SweepNow();
}

/// <summary>A coordinator's answer to "how did this transaction end?".</summary>
[GenerateSerializer, Immutable, Alias("twopc.InquiryReply")]
public sealed record InquiryReply(
    [property: Id(0)] string Decision,
    [property: Id(1)] DateTimeOffset? PrepareDeadline)
{
    public const string Commit = "Commit", Abort = "Abort", Pending = "Pending";
}
