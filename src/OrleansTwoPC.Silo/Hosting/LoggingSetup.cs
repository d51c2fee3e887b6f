using Microsoft.Extensions.Configuration;
using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace OrleansTwoPC.Silo.Hosting;

/// <summary>Serilog: human-readable console, plus every protocol event (Debug) as compact JSON in a file when asked.</summary>
public static class LoggingSetup
{
    public static LoggerConfiguration Configure(LoggerConfiguration logger, IConfiguration configuration)
    {
        var consoleLevel = ParseLevel(configuration["TwoPC:Logging:ConsoleLevel"], LogEventLevel.Information);
        var orleansLevel = ParseLevel(configuration["TwoPC:Logging:OrleansLevel"], LogEventLevel.Warning);
        logger
            .MinimumLevel.Debug()
            .MinimumLevel.Override("Orleans", orleansLevel)
            .MinimumLevel.Override("Microsoft", LogEventLevel.Warning)
            .Enrich.FromLogContext()
            .WriteTo.Console(restrictedToMinimumLevel: consoleLevel,
                outputTemplate: "[{Timestamp:HH:mm:ss.fff} {Level:u3}] {SourceContext}: {Message:lj}{NewLine}{Exception}");
        var file = configuration["TwoPC:Logging:JsonFile"];
        if (!string.IsNullOrWhiteSpace(file))
            logger.WriteTo.File(new CompactJsonFormatter(), file, restrictedToMinimumLevel: ParseLevel(configuration["TwoPC:Logging:FileLevel"], LogEventLevel.Debug));
        return logger;
    }

    private static LogEventLevel ParseLevel(string? text, LogEventLevel fallback) =>
        string.IsNullOrWhiteSpace(text) ? fallback
        : Enum.TryParse<LogEventLevel>(text, ignoreCase: true, out var level) ? level
        : throw new ArgumentException($"'{text}' is not a log level (Verbose, Debug, Information, Warning, Error, Fatal)");
}
