namespace OrleansTwoPC.Storage;

/// <summary>Where the service databases came from.</summary>
public enum PostgresSource
{
    /// <summary>All four <c>ConnectionStrings:*</c> entries were given.</summary>
    ConnectionStrings,

    /// <summary>Derived on the server of <c>ConnectionStrings:PostgresServer</c>.</summary>
    Server,

    /// <summary>Derived on an <see cref="EmbeddedPostgres"/> started for this process.</summary>
    Embedded,
}

/// <summary>
/// The resolved, provisioned databases. Disposing stops the embedded server if one was
/// started; external servers are left alone.
/// </summary>
public sealed class PostgresRuntime : IAsyncDisposable
{
    public PostgresRuntime(ServiceDatabases databases, PostgresSource source, string? serverConnectionString, EmbeddedPostgres? embeddedServer)
    {
        Databases = databases;
        Source = source;
        ServerConnectionString = serverConnectionString;
        EmbeddedServer = embeddedServer;
    }

    /// <summary>Connection strings of the four service databases (schema applied).</summary>
    public ServiceDatabases Databases { get; }

    public PostgresSource Source { get; }

    /// <summary>Admin connection to the server (database postgres), when one was configured or started.</summary>
    public string? ServerConnectionString { get; }

    /// <summary>The embedded server, when this runtime started one.</summary>
    public EmbeddedPostgres? EmbeddedServer { get; }

    public ValueTask DisposeAsync() => EmbeddedServer?.DisposeAsync() ?? ValueTask.CompletedTask;
}
