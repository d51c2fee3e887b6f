using System.Text.Json;
using System.Text.Json.Serialization;

namespace OrleansTwoPC.Storage.Records;

/// <summary>
/// The one JSON format of grain state in PostgreSQL: plain System.Text.Json, enums as names, no type
/// names or reference ids, derived (read-only) properties left out. The silo's grain-storage serializer
/// and everything that reads state straight from the database (recovery scan, invariant checker) share it.
/// </summary>
public static class StateJson
{
    public static readonly JsonSerializerOptions Options = new()
    {
        IgnoreReadOnlyProperties = true,
        Converters = { new JsonStringEnumConverter() },
    };
}
