using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using OrleansTwoPC.Grains.Telemetry;
using OrleansTwoPC.Silo.Hosting;

namespace OrleansTwoPC.Cluster.Tests;

/// <summary>
/// The meter and the traces, observed in process: the test cluster's silos run in this process, so a
/// <see cref="MeterListener"/> and an <see cref="ActivityListener"/> see what an OpenTelemetry exporter would.
/// Counters are process-wide; collections run one after another and tests in a collection sequentially,
/// so the deltas seen while this test runs are this test's (abort counts are checked per reason, so a
/// background presumed abort from an earlier test cannot disturb them).
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class MetricsTests(TwoPcClusterFixture fixture) : ClusterTestBase(fixture)
{
    private sealed record Measurement(string Instrument, double Value, IReadOnlyDictionary<string, object?> Tags);

    [Fact]
    public async Task Meter_counts_outcomes_and_a_trace_spans_coordinator_and_participants()
    {
        var measurements = new ConcurrentQueue<Measurement>();
        using var meterListener = new MeterListener();
        meterListener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == TwoPcTelemetry.MeterName) listener.EnableMeasurementEvents(instrument);
        };
        meterListener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => measurements.Enqueue(new(instrument.Name, value, ToDictionary(tags))));
        meterListener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => measurements.Enqueue(new(instrument.Name, value, ToDictionary(tags))));
        meterListener.Start();

        var activities = new ConcurrentQueue<Activity>();
        using var activityListener = new ActivityListener
        {
            // Orleans' own sources must be listened to as well: its grain-call filters only create (and
            // propagate) their client/server activities when somebody listens.
            ShouldListenTo = source => source.Name == TwoPcTelemetry.ActivitySourceName || source.Name.StartsWith("Microsoft.Orleans", StringComparison.Ordinal),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a => { if (a.Source.Name == TwoPcTelemetry.ActivitySourceName) activities.Enqueue(a); },
        };
        ActivitySource.AddActivityListener(activityListener);

        const int committed = 3, stockAborts = 2, fundsAborts = 1;
        var committedIds = new List<string>();
        for (var i = 0; i < committed; i++)
        {
            var outcome = await Place(Order(await NewAccount(10_000), (await NewSku(10), 1, 100)));
            Assert.Equal(OrderStatus.Committed, outcome.Status);
            committedIds.Add(outcome.TransactionId);
        }
        for (var i = 0; i < stockAborts; i++)
        {
            var outcome = await Place(Order(await NewAccount(10_000), (await NewSku(1), 5, 100)));
            Assert.Equal(OrderStatus.Aborted, outcome.Status);
            Assert.Contains("insufficient stock", outcome.Reason);
        }
        for (var i = 0; i < fundsAborts; i++)
        {
            var outcome = await Place(Order(await NewAccount(10), (await NewSku(10), 1, 100)));
            Assert.Equal(OrderStatus.Aborted, outcome.Status);
            Assert.Contains("insufficient funds", outcome.Reason);
        }
        var rejected = await Place(Order(Unique("no-such-account"), (await NewSku(10), 1, 100)));
        Assert.Equal(OrderStatus.Rejected, rejected.Status);

        // Counters are recorded before the coordinator replies, so they are complete now.
        meterListener.RecordObservableInstruments();
        var seen = measurements.ToList();
        double Sum(string instrument, string? outcome = null, string? reason = null) => seen
            .Where(m => m.Instrument == instrument
                        && (outcome is null || Equals(m.Tags.GetValueOrDefault(TwoPcTelemetry.OutcomeTag), outcome))
                        && (reason is null || Equals(m.Tags.GetValueOrDefault(TwoPcTelemetry.ReasonTag), reason)))
            .Sum(m => m.Value);
        int Count(string instrument) => seen.Count(m => m.Instrument == instrument);

        var decided = committed + stockAborts + fundsAborts;
        Assert.Equal(decided, Sum("twopc.transactions.started"));
        Assert.Equal(committed, Sum("twopc.transactions", TwoPcTelemetry.OutcomeCommitted));
        Assert.Equal(stockAborts, Sum("twopc.transactions", TwoPcTelemetry.OutcomeAborted, TwoPcTelemetry.ReasonInsufficientStock));
        Assert.Equal(fundsAborts, Sum("twopc.transactions", TwoPcTelemetry.OutcomeAborted, TwoPcTelemetry.ReasonInsufficientFunds));
        Assert.Equal(stockAborts + fundsAborts, Sum("twopc.transactions", TwoPcTelemetry.OutcomeAborted));
        // Every measurement of the one counter names its outcome; only aborts carry a reason.
        Assert.All(seen.Where(m => m.Instrument == "twopc.transactions"), m =>
        {
            Assert.True(m.Tags.ContainsKey(TwoPcTelemetry.OutcomeTag));
            Assert.Equal(Equals(m.Tags[TwoPcTelemetry.OutcomeTag], TwoPcTelemetry.OutcomeAborted), m.Tags.ContainsKey(TwoPcTelemetry.ReasonTag));
        });
        Assert.Equal(1, Sum("twopc.transactions", TwoPcTelemetry.OutcomeRejected));
        Assert.Equal(0, Sum("twopc.transactions", TwoPcTelemetry.OutcomeInDoubt));
        Assert.Equal(decided, Count("twopc.prepare.duration"));
        Assert.Equal(decided, Count("twopc.decision_write.duration"));
        Assert.Equal(decided, Count("twopc.transaction.duration"));
        // Durations are in seconds: an order here takes milliseconds, far under a second and above zero.
        Assert.All(seen.Where(m => m.Instrument.EndsWith(".duration", StringComparison.Ordinal)), m => Assert.InRange(m.Value, 0, 5));
        Assert.All(seen.Where(m => m.Instrument.EndsWith(".duration", StringComparison.Ordinal)), m => Assert.True(m.Value >= 0));

        // One trace per transaction: coordinator spans and, propagated across grain calls, the participants' prepares.
        var transactionId = committedIds[0];
        var participantPrepares = await WaitFor(activities, a => a.OperationName == TwoPcTelemetry.ParticipantPrepareActivity && HasTransaction(a, transactionId), 3);
        var transaction = Assert.Single(activities, a => a.OperationName == TwoPcTelemetry.TransactionActivity && HasTransaction(a, transactionId));
        var prepare = Assert.Single(activities, a => a.OperationName == TwoPcTelemetry.PrepareActivity && HasTransaction(a, transactionId));
        var decision = Assert.Single(activities, a => a.OperationName == TwoPcTelemetry.DecisionActivity && HasTransaction(a, transactionId));
        Assert.Equal(transaction.TraceId, prepare.TraceId);
        Assert.Equal(transaction.SpanId, prepare.ParentSpanId);
        Assert.Equal(transaction.TraceId, decision.TraceId);
        Assert.Equal(transaction.SpanId, decision.ParentSpanId);
        // Inventory, payment and shipment each prepared in the coordinator's trace (on whichever silo they live).
        Assert.Equal(3, participantPrepares.Count);
        Assert.All(participantPrepares, p => Assert.Equal(transaction.TraceId, p.TraceId));
        Assert.All(participantPrepares, p => Assert.True(p.StartTimeUtc >= prepare.StartTimeUtc));
        var phaseTwo = await WaitFor(activities, a => a.OperationName == TwoPcTelemetry.PhaseTwoActivity && HasTransaction(a, transactionId), 3);
        Assert.All(phaseTwo, p => Assert.Equal(transaction.TraceId, p.TraceId));
    }

    [Theory]
    [InlineData(null, false)]
    [InlineData("none", false)]
    [InlineData("console", true)]
    [InlineData("otlp", true)]
    public void Exporters_are_off_by_default_and_registered_by_configuration(string? exporter, bool registered)
    {
        var settings = new Dictionary<string, string?> { ["TwoPC:Telemetry:OtlpEndpoint"] = "http://localhost:4317" };
        if (exporter is not null) settings["TwoPC:Telemetry:Exporter"] = exporter;
        var services = new ServiceCollection();
        TwoPhaseCommitSiloExtensions.AddTelemetryExporters(services, new ConfigurationBuilder().AddInMemoryCollection(settings).Build());
        using var provider = services.BuildServiceProvider();
        Assert.Equal(registered, provider.GetService<MeterProvider>() is not null);
        Assert.Equal(registered, provider.GetService<TracerProvider>() is not null);
    }

    [Fact]
    public void Unknown_exporter_is_refused()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["TwoPC:Telemetry:Exporter"] = "zipkin" }).Build();
        Assert.Throws<InvalidOperationException>(() => TwoPhaseCommitSiloExtensions.AddTelemetryExporters(new ServiceCollection(), configuration));
    }

    private static bool HasTransaction(Activity activity, string transactionId) =>
        activity.GetTagItem(TwoPcTelemetry.TransactionTag) as string == transactionId;

    private static async Task<List<Activity>> WaitFor(ConcurrentQueue<Activity> activities, Func<Activity, bool> match, int count)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            var found = activities.Where(match).ToList();
            if (found.Count >= count || DateTime.UtcNow > deadline) return found;
            await Task.Delay(50);
        }
    }

    private static Dictionary<string, object?> ToDictionary(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var result = new Dictionary<string, object?>(tags.Length);
        foreach (var tag in tags) result[tag.Key] = tag.Value;
        return result;
    }
}
