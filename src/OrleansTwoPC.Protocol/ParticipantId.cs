namespace OrleansTwoPC.Protocol;

/// <summary>The three kinds of resource manager an order touches.</summary>
public enum ParticipantKind
{
    Inventory = 1,
    Payment = 2,
    Shipment = 3,
}

/// <summary>Names one participant (one grain = one resource): its kind and its key (SKU, account id, order id).</summary>
public sealed record ParticipantId(ParticipantKind Kind, string Key)
{
    public override string ToString() => $"{Kind.ToString().ToLowerInvariant()}/{Key}";

    public static ParticipantId Parse(string text)
    {
        var slash = text.IndexOf('/');
        if (slash <= 0 || slash == text.Length - 1 || !Enum.TryParse<ParticipantKind>(text[..slash], ignoreCase: true, out var kind))
            throw new FormatException($"'{text}' is not a participant id (expected kind/key, e.g. inventory/SKU-1)");
        return new ParticipantId(kind, text[(slash + 1)..]);
    }
}

public enum Vote
{
    Yes = 1,
    No = 2,
}

public enum Decision
{
    None = 0,
    Commit = 1,
    Abort = 2,
}
