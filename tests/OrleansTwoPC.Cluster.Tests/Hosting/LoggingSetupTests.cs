using Microsoft.Extensions.Configuration;
using OrleansTwoPC.Silo.Hosting;
using Serilog;
using Serilog.Core;
using Serilog.Events;

namespace OrleansTwoPC.Cluster.Tests.Hosting;

/// <summary>What the silo's logging keeps at its default levels.</summary>
public sealed class LoggingSetupTests
{
    private sealed class Collector : ILogEventSink
    {
        public List<LogEvent> Events { get; } = [];
        public void Emit(LogEvent logEvent) => Events.Add(logEvent);
    }

    [Theory]
    [InlineData(null, false)]
    [InlineData("Warning", false)]
    [InlineData("Information", true)]
    public void Pollys_per_attempt_messages_follow_the_Orleans_level(string? orleansLevel, bool kept)
    {
        var settings = new Dictionary<string, string?> { ["TwoPC:Logging:ConsoleLevel"] = "Fatal", ["TwoPC:Logging:OrleansLevel"] = orleansLevel };
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        var collector = new Collector();
        using (var logger = LoggingSetup.Configure(new LoggerConfiguration(), configuration).WriteTo.Sink(collector).CreateLogger())
        {
            logger.ForContext(Constants.SourceContextPropertyName, "Polly").Information("Execution attempt. Source: 'Orleans.Placement/(null)/Retry'");
            logger.ForContext(Constants.SourceContextPropertyName, "Polly").Warning("Resilience pipeline gave up");
            logger.ForContext(Constants.SourceContextPropertyName, "OrleansTwoPC.Grains.Coordinator.TransactionCoordinatorGrain").Information("Decision Commit written");
        }

        Assert.Equal(kept, collector.Events.Any(e => e.Level == LogEventLevel.Information && e.MessageTemplate.Text.StartsWith("Execution attempt", StringComparison.Ordinal)));
        Assert.Contains(collector.Events, e => e.Level == LogEventLevel.Warning);
        Assert.Contains(collector.Events, e => e.MessageTemplate.Text == "Decision Commit written");
    }
}
