using System.Diagnostics.Metrics;

namespace OrleansTwoPC.Benchmark.Measurement;

/// <summary>Grain state reads and writes counted so far, and the largest single write (bytes as sent by the
/// batched storage; null when no write of it was seen, as with the ADO.NET storage and Orleans Transactions).</summary>
public readonly record struct GrainStorageCounts(long Reads, long Writes, long? LargestWriteBytes = null)
{
    /// <summary>The counts between two readings; the largest write is the one since the earlier reading was taken.</summary>
    public static GrainStorageCounts operator -(GrainStorageCounts after, GrainStorageCounts before) =>
        new(after.Reads - before.Reads, after.Writes - before.Writes, after.LargestWriteBytes);
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
    private long _largestWrite = -1;

    public GrainStorageCounter()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == MeterName && instrument.Name is ReadInstrument or WriteInstrument) listener.EnableMeasurementEvents(instrument);
            if (instrument.Meter.Name == OrleansTwoPC.Storage.Batching.BatchedStateWriter.MeterName && instrument.Name == OrleansTwoPC.Storage.Batching.BatchedStateWriter.StateWriteBytesName)
                listener.EnableMeasurementEvents(instrument);
        };
        _listener.SetMeasurementEventCallback<long>((_, bytes, _, _) =>
        {
            for (var seen = Interlocked.Read(ref _largestWrite); bytes > seen; seen = Interlocked.Read(ref _largestWrite))
                if (Interlocked.CompareExchange(ref _largestWrite, bytes, seen) == seen) break;
        });
        _listener.SetMeasurementEventCallback<double>((instrument, _, _, _) =>
        {
            if (instrument.Name == ReadInstrument) Interlocked.Increment(ref _reads);
            else Interlocked.Increment(ref _writes);
        });
        _listener.Start();
    }

    public GrainStorageCounts Current => new(Interlocked.Read(ref _reads), Interlocked.Read(ref _writes), Interlocked.Read(ref _largestWrite) is var largest and >= 0 ? largest : null);

    /// <summary>Starts a new largest write: the next readings report the largest since now.</summary>
    public void RestartLargestWrite() => Interlocked.Exchange(ref _largestWrite, -1);

    public void Dispose() => _listener.Dispose();
}
