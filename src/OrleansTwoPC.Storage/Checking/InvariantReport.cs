using System.Globalization;
using System.Text;

namespace OrleansTwoPC.Storage.Checking;

/// <summary>The invariants the checker verifies (see the "Invariants" section of the architecture guide).</summary>
public static class InvariantCodes
{
    /// <summary>Atomicity across services: no effect without a durable COMMIT decision, participants agree
    /// with the coordinator (tombstones, shipment content).</summary>
    public const string Atomicity = "I1";

    /// <summary>Conservation: per counter Committed + ConsumedTotal == SuppliedTotal, and ConsumedTotal equals
    /// what the committed transactions took.</summary>
    public const string Conservation = "I2";

    /// <summary>No negative stock or balance, no oversell (reservations never exceed the committed value).</summary>
    public const string NoNegative = "I3";

    /// <summary>Outcomes as decided: a committed transaction is applied, an aborted one has no effect.</summary>
    public const string OutcomeApplied = "I4";

    /// <summary>Nothing left behind: no open reservation, no decided-but-unfinished transaction.</summary>
    public const string NothingLeftBehind = "I5";

    public static string Describe(string code) => code switch
    {
        Atomicity => "atomicity: no effect without a durable commit decision; participants agree with it",
        Conservation => "conservation of stock and money",
        NoNegative => "no negative stock or balance, no oversell",
        OutcomeApplied => "committed transactions applied, aborted ones without effect",
        NothingLeftBehind => "no open reservation, no unfinished transaction",
        _ => "unknown invariant",
    };
}

/// <summary>One broken invariant. <paramref name="Ids"/> names what is involved: participants as
/// <c>kind/key</c> (e.g. <c>inventory/SKU-1</c>) and transaction ids.</summary>
public sealed record InvariantViolation(string Code, string Message, IReadOnlyList<string> Ids)
{
    public override string ToString() => $"{Code} {Message}";
}

/// <summary>What one run of the <see cref="InvariantChecker"/> found.</summary>
public sealed record InvariantReport
{
    /// <summary>When the participant databases were read (the start of the snapshot), checker clock.</summary>
    public required DateTimeOffset CheckedAt { get; init; }

    /// <summary>Null for a strict check; otherwise work younger than this was tolerated as in flight.</summary>
    public TimeSpan? AllowedInFlight { get; init; }

    /// <summary>Coordinator records with a durable COMMIT decision (in scope).</summary>
    public int TransactionsCommitted { get; init; }

    /// <summary>Coordinator records with a durable ABORT decision, presumed aborts included (in scope).</summary>
    public int TransactionsAborted { get; init; }

    /// <summary>Decided transactions still in their phase two and tolerated (only with <see cref="AllowedInFlight"/>).</summary>
    public int TransactionsInFlight { get; init; }

    public int SkusChecked { get; init; }
    public int AccountsChecked { get; init; }
    public int ShipmentsChecked { get; init; }

    /// <summary>Units consumed by commits over the checked SKUs. 128 bits: each counter holds up to
    /// <see cref="long.MaxValue"/>, so their sum can exceed a long.</summary>
    public Int128 UnitsSold { get; init; }

    /// <summary>Money (minor units) consumed by commits over the checked accounts (128 bits, as <see cref="UnitsSold"/>).</summary>
    public Int128 MoneyCharged { get; init; }

    /// <summary>How long <see cref="InvariantChecker.WaitUntilQuiescentAsync"/> waited before this check (null: no wait).</summary>
    public TimeSpan? Waited { get; init; }

    /// <summary>Whether the wait ended because nothing was left behind (false: the timeout passed).</summary>
    public bool? ReachedQuiescence { get; init; }

    public IReadOnlyList<InvariantViolation> Violations { get; init; } = [];

    /// <summary>Things that limited the check without being violations (e.g. records without an order summary).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];

    public bool Ok => Violations.Count == 0;

    /// <summary>The violations of one invariant.</summary>
    public IReadOnlyList<InvariantViolation> Of(string code) => Violations.Where(v => v.Code == code).ToList();

    /// <summary>A human-readable report, one violation per line.</summary>
    public string ToText()
    {
        var text = new StringBuilder();
        var mode = AllowedInFlight is { } allowed
            ? $"work younger than {allowed.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s tolerated as in flight"
            : "strict";
        text.Append(CultureInfo.InvariantCulture, $"invariant check at {CheckedAt:yyyy-MM-dd HH:mm:ss}Z ({mode})\n");
        if (Waited is { } waited)
        {
            text.Append(CultureInfo.InvariantCulture,
                $"  waited {waited.TotalSeconds:0.0} s for quiescence: {(ReachedQuiescence == true ? "reached" : "timed out, checking anyway")}\n");
        }

        text.Append(CultureInfo.InvariantCulture,
            $"  transactions: {TransactionsCommitted} committed, {TransactionsAborted} aborted, {TransactionsInFlight} in flight\n");
        text.Append(CultureInfo.InvariantCulture,
            $"  checked: {SkusChecked} SKUs, {AccountsChecked} accounts, {ShipmentsChecked} shipments; units sold {UnitsSold}, money charged {MoneyCharged}\n");
        foreach (var note in Notes)
        {
            text.Append("  note: ").Append(note).Append('\n');
        }

        if (Ok)
        {
            text.Append("OK: I1-I5 hold\n");
        }
        else
        {
            text.Append(CultureInfo.InvariantCulture, $"{Violations.Count} violation{(Violations.Count == 1 ? "" : "s")}:\n");
            foreach (var violation in Violations)
            {
                text.Append("  ").Append(violation.Code).Append(' ').Append(violation.Message).Append('\n');
            }
        }

        return text.ToString();
    }
}
