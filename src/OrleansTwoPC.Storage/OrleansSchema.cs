namespace OrleansTwoPC.Storage;

/// <summary>
/// What the Orleans ADO.NET providers need from the schema in <c>sql/</c>: the invariant name
/// to configure and the query keys each provider reads from <c>OrleansQuery</c> at start-up
/// (a missing key fails silo start-up).
/// </summary>
public static class OrleansSchema
{
    /// <summary>ADO.NET invariant for PostgreSQL; the providers default to SQL Server otherwise.</summary>
    public const string Invariant = "Npgsql";

    /// <summary>Keys read by AddAdoNetGrainStorage (DeleteStorageKey only with DeleteStateOnClear).</summary>
    public static IReadOnlyList<string> GrainStorageQueryKeys { get; } =
    [
        "ReadFromStorageKey",
        "WriteToStorageKey",
        "ClearStorageKey",
        "DeleteStorageKey",
    ];

    /// <summary>Keys read by UseAdoNetReminderService.</summary>
    public static IReadOnlyList<string> ReminderQueryKeys { get; } =
    [
        "UpsertReminderRowKey",
        "ReadReminderRowKey",
        "ReadReminderRowsKey",
        "ReadRangeRows1Key",
        "ReadRangeRows2Key",
        "DeleteReminderRowKey",
        "DeleteReminderRowsKey",
    ];

    /// <summary>Keys read by UseAdoNetClustering (CleanupDefunctSiloEntryKey is optional but preferred).</summary>
    public static IReadOnlyList<string> ClusteringQueryKeys { get; } =
    [
        "InsertMembershipVersionKey",
        "InsertMembershipKey",
        "UpdateMembershipKey",
        "UpdateIAmAlivetimeKey",
        "MembershipReadRowKey",
        "MembershipReadAllKey",
        "GatewaysQueryKey",
        "DeleteMembershipTableEntriesKey",
        "CleanupDefunctSiloEntriesKey",
        "CleanupDefunctSiloEntryKey",
    ];

    /// <summary>Every key the scripts install.</summary>
    public static IReadOnlyList<string> AllQueryKeys { get; } =
        [.. GrainStorageQueryKeys, .. ReminderQueryKeys, .. ClusteringQueryKeys];
}
