using System.Text.Json;
using Orleans.Storage;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// Grain state as plain System.Text.Json (<see cref="StateJson"/>): no type names or reference ids (the
/// default Newtonsoft setup writes both), so records are a fraction of the size, cheaper to write, and
/// readable with SQL (<c>convert_from(payloadbinary, 'UTF8')::jsonb</c>) by operators, the recovery sweep
/// and the invariant checker.
/// </summary>
public sealed class CompactJsonGrainStorageSerializer : IGrainStorageSerializer
{
    public BinaryData Serialize<T>(T? input) => new(JsonSerializer.SerializeToUtf8Bytes(input, StateJson.Options));

    public T Deserialize<T>(BinaryData input) => JsonSerializer.Deserialize<T>(input.ToMemory().Span, StateJson.Options)!;
}
