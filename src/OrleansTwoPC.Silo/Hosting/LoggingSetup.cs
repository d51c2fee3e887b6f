using Microsoft.Extensions.Configuration;
using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>Serilog: human-readable console, plus every protocol event (Debug) as compact JSON in a rolling file when asked.</summary>
public static class LoggingSetup
{
    public static LoggerConfiguration Configure(LoggerConfiguration logger, IConfiguration configuration)
    {
        var consoleLevel = ParseLevel(configuration, "TwoPC:Logging:ConsoleLevel", LogEventLevel.Information);
        var orleansLevel = ParseLevel(configuration, "TwoPC:Logging:OrleansLevel", LogEventLevel.Warning);
        logger
            .MinimumLevel.Debug()
            .MinimumLevel.Override("Orleans", orleansLevel)
            // Orleans' placement pipeline logs every Polly attempt at Information: Orleans' level applies.
            .MinimumLevel.Override("Polly", orleansLevel)
            .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)
            .Enrich.FromLogContext()
            .WriteTo.Console(restrictedToMinimumLevel: consoleLevel,
                outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {SourceContext}: {Message:lj}{NewLine}{Exception}");
        var file = configuration["TwoPC:Logging:JsonFile"];
        if (!string.IsNullOrWhiteSpace(file))
            // Rolling: a new file each day or every 100 MB (twopc20261128.json, twopc20261128_001.json, ...),
            // the last 14 kept, so a long-running silo never fills its disk with protocol events.
            logger.WriteTo.File(new CompactJsonFormatter(), file,
                restrictedToMinimumLevel: ParseLevel(configuration, "TwoPC:Logging:FileLevel", LogEventLevel.Debug),
                rollingInterval: RollingInterval.Day,
                fileSizeLimitBytes: 100L * 1024 * 1024,
                rollOnFileSizeLimit: true,
                retainedFileCountLimit: 14);
        return logger;
    }

    /// <summary>A level setting; a bad one is a <see cref="SiloStartupException"/>, which the silo reports as one line.</summary>
    private static LogEventLevel ParseLevel(IConfiguration configuration, string key, LogEventLevel fallback)
    {
        var text = configuration[key];
        if (string.IsNullOrWhiteSpace(text)) return fallback;
        // By name only: Enum.Parse would also take any number ("7").
        var name = Enum.GetNames<LogEventLevel>().FirstOrDefault(n => string.Equals(n, text.Trim(), StringComparison.OrdinalIgnoreCase));
        return name is not null
            ? Enum.Parse<LogEventLevel>(name)
            : throw new SiloStartupException($"{key} must be a log level (Verbose, Debug, Information, Warning, Error, Fatal), not '{text}'");
    }
}
