using System.Text.Json;
using System.Text.Json.Serialization;
using Orleans.Storage;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>
/// Grain state as plain System.Text.Json: no type names or reference ids (the default Newtonsoft setup
/// writes both), so records are a fraction of the size, cheaper to write, and readable with SQL
/// (<c>convert_from(payloadbinary, 'UTF8')::jsonb</c>) by operators and the recovery scan.
/// </summary>
public sealed class CompactJsonGrainStorageSerializer : IGrainStorageSerializer
{
    public static readonly JsonSerializerOptions Options = new()
    {
        // Derived properties (IsDecided, Id, ...) are recomputed on load, never stored.
        IgnoreReadOnlyProperties = true,
        Converters = { new JsonStringEnumConverter() },
    };

    public BinaryData Serialize<T>(T input) => new(JsonSerializer.SerializeToUtf8Bytes(input, Options));

    public T Deserialize<T>(BinaryData input) => JsonSerializer.Deserialize<T>(input.ToMemory().Span, Options)!;
}
