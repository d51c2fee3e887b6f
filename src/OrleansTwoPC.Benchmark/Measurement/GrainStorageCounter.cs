using System.Diagnostics.Metrics;

namespace OrleansTwoPC.Benchmark.Measurement;

/// <summary>Grain state reads and writes counted so far.</summary>
public readonly record struct GrainStorageCounts(long Reads, long Writes)
{
    public static GrainStorageCounts operator -(GrainStorageCounts after, GrainStorageCounts before) =>
        new(after.Reads - before.Reads, after.Writes - before.Writes);
}

/// <summary>
/// Counts the grain state reads and writes Orleans records in this process (its meter
/// <c>Microsoft.Orleans</c>, one measurement of <c>orleans-storage-read-latency</c> or
/// <c>-write-latency</c> per operation of a grain's persistent state, Orleans Transactions' state included).
/// Only one system runs at a time, so the counts of a run are that system's.
/// </summary>
public sealed class GrainStorageCounter : IDisposable
{
    private const string MeterName = "Microsoft.Orleans";
    private const string ReadInstrument = "orleans-storage-read-latency";
    private const string WriteInstrument = "orleans-storage-write-latency";

    private readonly MeterListener _listener = new();
    private long _reads;
    private long _writes;

    public GrainStorageCounter()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == MeterName && instrument.Name is ReadInstrument or WriteInstrument) listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<double>((instrument, _, _, _) =>
        {
            if (instrument.Name == ReadInstrument) Interlocked.Increment(ref _reads);
            else Interlocked.Increment(ref _writes);
        });
        _listener.Start();
    }

    public GrainStorageCounts Current => new(Interlocked.Read(ref _reads), Interlocked.Read(ref _writes));

    public void Dispose() => _listener.Dispose();
}
