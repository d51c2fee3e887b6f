namespace OrleansTwoPC.Protocol.Coordinator;

/// <summary>What the caller is told: the durable decision and every participant's vote.</summary>
public sealed record TransactionOutcome(
    string TransactionId,
    Decision Decision,
    string? AbortReason,
    IReadOnlyList<ParticipantVoteReport> Votes);

public sealed record ParticipantVoteReport(string Participant, Vote? Vote, VoteSource Source, string? Reason);
