using System.Text.Json;
using Npgsql;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Protocol.Coordinator;

namespace OrleansTwoPC.Storage.Records;

/// <summary>Percentiles of one phase's duration, in seconds, over the transactions that completed it.</summary>
public sealed record PhaseLatency(int Count, double? P50, double? P95, double? P99);

/// <summary>Aborted transactions of one kind of reason.</summary>
public sealed record AbortReasonCount(string Reason, int Count);

/// <summary>
/// What an operator looks at first: what is in doubt now and for how long, and the decisions of the last
/// <see cref="WindowSeconds"/> (rates, aborts by reason, phase latencies).
/// </summary>
public sealed record TransactionOverview(
    DateTimeOffset At,
    int InDoubt,
    double? OldestInDoubtSeconds,
    int InFlight,
    double WindowSeconds,
    int Committed,
    int Aborted,
    double CommitsPerSecond,
    double AbortsPerSecond,
    IReadOnlyList<AbortReasonCount> AbortsByReason,
    PhaseLatency Prepare,
    PhaseLatency PhaseTwo,
    bool Truncated);

/// <summary>Computes <see cref="TransactionOverview"/> straight from the databases (read-only).</summary>
/// <param name="reasonKind">Maps a free-text abort reason to its kind; the silo passes the telemetry's
/// classification, so the console and the metrics' <c>reason</c> attribute use the same names.</param>
public sealed class TransactionOverviewReader(ServiceDatabases databases, Func<string?, string> reasonKind)
{
    /// <summary>Most decisions of the window read; a busier window is summarised from its newest ones (<see cref="TransactionOverview.Truncated"/>).</summary>
    public const int MaxDecisions = 20_000;

    public async Task<TransactionOverview> ReadAsync(TimeSpan window, DateTimeOffset now, CancellationToken cancellationToken = default)
    {
        var inDoubt = await new TransactionListReader(databases).InDoubtAsync(cancellationToken);
        var since = now - window;
        var decided = new List<CoordinatorRecord>();
        int inFlight;
        await using (var connection = new NpgsqlConnection(databases.Coordinator))
        {
            await connection.OpenAsync(cancellationToken);
            await using (var command = new NpgsqlCommand(
                             "SELECT payloadbinary FROM (SELECT payloadbinary, convert_from(payloadbinary, 'UTF8')::jsonb AS j " +
                             $"FROM {TransactionListReader.CoordinatorRows} WHERE modifiedon >= @modifiedSince) r " +
                             "WHERE j->>'Decision' IN ('Commit', 'Abort') AND (j->>'DecidedAt')::timestamptz >= @since " +
                             "ORDER BY (j->>'DecidedAt')::timestamptz DESC LIMIT @take", connection))
            {
                command.Parameters.AddWithValue("state", StateNames.Coordinator);
                command.Parameters.AddWithValue("since", since.UtcDateTime);
                // Decided before its last write: only rows written in the window (less clock skew) can count.
                command.Parameters.AddWithValue("modifiedSince", (since - TransactionListReader.ClockSkewMargin).UtcDateTime);
                command.Parameters.AddWithValue("take", MaxDecisions + 1);
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                    decided.Add(JsonSerializer.Deserialize<CoordinatorRecord>((byte[])reader.GetValue(0), StateJson.Options)!);
            }

            await using var unfinished = new NpgsqlCommand(
                $"SELECT count(*) FROM {TransactionListReader.CoordinatorRows} WHERE " +
                "position('\"CompletedAt\":null'::bytea IN payloadbinary) > 0", connection);
            unfinished.Parameters.AddWithValue("state", StateNames.Coordinator);
            inFlight = (int)(long)(await unfinished.ExecuteScalarAsync(cancellationToken))!;
        }

        var truncated = decided.Count > MaxDecisions;
        if (truncated) decided.RemoveAt(decided.Count - 1);
        var committed = decided.Count(r => r.Decision == Decision.Commit);
        var aborted = decided.Count - committed;
        var seconds = window.TotalSeconds;
        return new TransactionOverview(
            now,
            inDoubt.Count,
            inDoubt.Count == 0 ? null : Math.Round(Math.Max(0, (now - inDoubt.Min(t => t.StartedAt)).TotalSeconds), 1),
            inFlight,
            seconds,
            committed,
            aborted,
            Math.Round(committed / seconds, 3),
            Math.Round(aborted / seconds, 3),
            decided.Where(r => r.Decision == Decision.Abort)
                .GroupBy(r => reasonKind(r.AbortReason))
                .Select(g => new AbortReasonCount(g.Key, g.Count()))
                .OrderByDescending(g => g.Count).ThenBy(g => g.Reason, StringComparer.Ordinal)
                .ToList(),
            Latency(decided.Where(r => !r.PresumedAbort && r.DecidedAt is not null).Select(r => (r.DecidedAt!.Value - r.StartedAt).TotalSeconds)),
            Latency(decided.Where(r => !r.PresumedAbort && r.DecidedAt is not null && r.CompletedAt is not null).Select(r => (r.CompletedAt!.Value - r.DecidedAt!.Value).TotalSeconds)),
            truncated);
    }

    private static PhaseLatency Latency(IEnumerable<double> seconds)
    {
        var sorted = seconds.Where(s => s >= 0).Order().ToArray();
        double? At(double q) => sorted.Length == 0 ? null : Math.Round(sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)], 4);
        return new PhaseLatency(sorted.Length, At(0.50), At(0.95), At(0.99));
    }
}
