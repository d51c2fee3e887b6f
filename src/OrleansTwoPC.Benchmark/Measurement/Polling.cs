namespace OrleansTwoPC.Benchmark.Measurement;

/// <summary>Polls a condition until it holds or the time is up (systems settling after a run).</summary>
public static class Polling
{
    public static async Task<bool> UntilAsync(Func<CancellationToken, Task<bool>> condition, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            if (await condition(cancellationToken)) return true;
            if (DateTime.UtcNow > deadline) return false;
            await Task.Delay(100, cancellationToken);
        }
    }
}
