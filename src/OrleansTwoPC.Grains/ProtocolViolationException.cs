namespace OrleansTwoPC.Grains;

/// <summary>A participant was told the opposite of a decision it already applied. Never acknowledged.</summary>
public sealed class ProtocolViolationException(string message) : Exception(message);
