using System.Diagnostics.Metrics;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OrleansTwoPC.Grains.Telemetry;
using OrleansTwoPC.Storage;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Silo.Admin;

/// <summary>
/// Observable gauges of what is in doubt now, for scrapes and alerts: <c>twopc.in_doubt.count</c> and
/// <c>twopc.in_doubt.oldest_age</c> (seconds). Read from the databases every <see cref="Period"/> in the
/// background (a scrape never waits for PostgreSQL); nothing is reported while the last read failed.
/// </summary>
public sealed class InDoubtGauges : BackgroundService
{
    public static readonly TimeSpan Period = TimeSpan.FromSeconds(10);

    private readonly Meter _meter = new(TwoPcTelemetry.MeterName);
    private readonly TransactionListReader _reader;
    private readonly TimeProvider _time;
    private readonly ILogger<InDoubtGauges> _logger;
    private volatile Snapshot? _last;

    public InDoubtGauges(ServiceDatabases databases, TimeProvider time, ILogger<InDoubtGauges> logger)
    {
        _reader = new TransactionListReader(databases);
        _time = time;
        _logger = logger;
        _meter.CreateObservableGauge("twopc.in_doubt.count", () => _last is { } s ? [new Measurement<long>(s.Count)] : Array.Empty<Measurement<long>>(),
            unit: "{transaction}", description: "Transactions prepared somewhere with no durable decision, now");
        _meter.CreateObservableGauge("twopc.in_doubt.oldest_age", () => _last is { Oldest: { } oldest } ? [new Measurement<double>(Math.Max(0, (_time.GetUtcNow() - oldest).TotalSeconds))] : Array.Empty<Measurement<double>>(),
            unit: "s", description: "Age of the oldest in-doubt transaction (since its first participant prepared)");
    }

    private sealed record Snapshot(int Count, DateTimeOffset? Oldest);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var failing = false;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var inDoubt = await _reader.InDoubtAsync(stoppingToken);
                _last = new Snapshot(inDoubt.Count, inDoubt.Count == 0 ? null : inDoubt.Min(t => t.StartedAt));
                failing = false;
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                _last = null;
                if (!failing) _logger.LogWarning("In-doubt gauges: reading the databases failed, not reported until they answer: {Error}", ex.GetBaseException().Message);
                failing = true;
            }

            try
            {
                await Task.Delay(Period, _time, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    public override void Dispose()
    {
        _meter.Dispose();
        base.Dispose();
    }
}
