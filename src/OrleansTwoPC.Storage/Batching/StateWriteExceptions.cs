namespace OrleansTwoPC.Storage.Batching;

/// <summary>
/// A write or clear was refused because the stored version is not the one the caller expected (another
/// activation wrote first, or the row exists when it was expected absent). Nothing was written for this
/// grain; the rest of its batch is unaffected. The caller must reload before writing again.
/// </summary>
public sealed class StateVersionConflictException(string stateName, string key, int expectedVersion)
    : Exception($"{stateName} '{key}': stored version is not {(expectedVersion == 0 ? "absent" : expectedVersion.ToString(System.Globalization.CultureInfo.InvariantCulture))}; reload before writing")
{
    public string StateName { get; } = stateName;

    public string Key { get; } = key;

    /// <summary>The version the caller expected; 0 means "must not exist".</summary>
    public int ExpectedVersion { get; } = expectedVersion;
}

/// <summary>
/// The batch carrying this write failed before its commit was confirmed (connection lost, statement or commit
/// failed): the write may or may not be durable. The caller must reload the state before deciding anything.
/// </summary>
public sealed class StateWriteOutcomeUnknownException(string stateName, string key, Exception inner)
    : Exception($"{stateName} '{key}': write outcome unknown, reload the state ({inner.GetBaseException().Message})", inner)
{
    public string StateName { get; } = stateName;

    public string Key { get; } = key;
}
