namespace OrleansTwoPC.Protocol.Tests;

public sealed class ProtocolOptionsTests
{
    [Fact]
    public void Defaults_AreValid()
    {
        var options = new ProtocolOptions();
        options.Validate();
        Assert.Equal(TimeSpan.FromSeconds(5), options.PrepareTimeout);
        Assert.Equal(TimeSpan.FromMilliseconds(100), options.RetryBaseDelay);
        Assert.Equal(TimeSpan.FromSeconds(10), options.RetryMaxDelay);
        Assert.Equal(TimeSpan.FromSeconds(30), options.DecisionRetention);
        Assert.Equal(TimeSpan.FromSeconds(30), options.InDoubtTimeout);
        Assert.Equal(8, options.MaxStepsPerWrite);
    }

    public static TheoryData<string, Action<ProtocolOptions>> Invalid => new()
    {
        { "PrepareTimeout", o => o.PrepareTimeout = TimeSpan.Zero },
        { "PrepareTimeout", o => o.PrepareTimeout = TimeSpan.FromSeconds(-1) },
        { "RetryBaseDelay", o => o.RetryBaseDelay = TimeSpan.Zero },
        { "RetryMaxDelay", o => o.RetryMaxDelay = TimeSpan.FromMilliseconds(99) },
        { "DecisionRetention", o => o.DecisionRetention = TimeSpan.FromSeconds(5) },
        { "DecisionRetention", o => o.DecisionRetention = TimeSpan.FromSeconds(1) },
        { "InDoubtTimeout", o => o.InDoubtTimeout = TimeSpan.Zero },
        { "MaxStepsPerWrite", o => o.MaxStepsPerWrite = 0 },
        { "MaxStepsPerWrite", o => o.MaxStepsPerWrite = -3 },
    };

    [Theory]
    [MemberData(nameof(Invalid))]
    public void Validate_RejectsEachBadSetting_NamingIt(string setting, Action<ProtocolOptions> spoil)
    {
        var options = new ProtocolOptions();
        spoil(options);
        var ex = Assert.Throws<ArgumentException>(options.Validate);
        Assert.Contains(setting, ex.Message);
    }

    [Fact]
    public void Validate_NamesAZeroPrepareTimeout_BeforeAnythingThatDependsOnIt()
    {
        var ex = Assert.Throws<ArgumentException>(new ProtocolOptions { PrepareTimeout = TimeSpan.Zero }.Validate);
        Assert.Equal("PrepareTimeout must be positive", ex.Message);
    }

    [Fact]
    public void RetryDelay_OfAZeroBaseDelay_IsTheCap_NeverZero()
    {
        // Unvalidated options must not produce a retry loop without any delay.
        var options = new ProtocolOptions { RetryBaseDelay = TimeSpan.Zero, RetryMaxDelay = TimeSpan.FromSeconds(1) };
        Assert.Equal(TimeSpan.FromSeconds(1), options.RetryDelay(1));
    }

    [Fact]
    public void TheDeadlineBound_IsFourPrepareTimeouts_UpToExactlyAQuarterOfTheLongestSpan()
    {
        var quarter = TimeSpan.MaxValue / ProtocolOptions.DefaultDeadlineAheadFactor;
        Assert.Equal(quarter * ProtocolOptions.DefaultDeadlineAheadFactor, new ProtocolOptions { PrepareTimeout = quarter }.MaxPrepareDeadlineAhead);
        Assert.Equal(TimeSpan.MaxValue, new ProtocolOptions { PrepareTimeout = quarter + TimeSpan.FromTicks(1) }.MaxPrepareDeadlineAhead);
    }

    [Fact]
    public void Validate_AcceptsBoundaryValues()
    {
        new ProtocolOptions { RetryMaxDelay = TimeSpan.FromMilliseconds(100), DecisionRetention = TimeSpan.FromSeconds(5) + TimeSpan.FromTicks(1), MaxStepsPerWrite = 1 }.Validate();
    }

    [Theory]
    [InlineData(1, 100)]
    [InlineData(2, 200)]
    [InlineData(3, 400)]
    [InlineData(4, 800)]
    [InlineData(7, 6_400)]
    [InlineData(8, 10_000)]
    [InlineData(31, 10_000)]
    [InlineData(32, 10_000)]
    [InlineData(int.MaxValue, 10_000)]
    public void RetryDelay_IsCappedExponential(int attempt, int expectedMs)
    {
        Assert.Equal(TimeSpan.FromMilliseconds(expectedMs), new ProtocolOptions().RetryDelay(attempt));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-5)]
    [InlineData(int.MinValue)]
    public void RetryDelay_OfANonPositiveAttempt_IsTheBaseDelay(int attempt)
    {
        Assert.Equal(TimeSpan.FromMilliseconds(100), new ProtocolOptions().RetryDelay(attempt));
    }

    [Theory]
    [InlineData(1, 60_000)]          // 1 ms .. 1 min
    [InlineData(100, 10_000)]        // defaults
    [InlineData(250, 250)]           // cap == base
    [InlineData(600_000, 3_600_000)] // 10 min .. 1 h
    public void RetryDelay_NeverDecreases_NeverExceedsTheCap_NeverGoesBelowTheBase(int baseMs, int maxMs)
    {
        var options = new ProtocolOptions { RetryBaseDelay = TimeSpan.FromMilliseconds(baseMs), RetryMaxDelay = TimeSpan.FromMilliseconds(maxMs) };
        var previous = TimeSpan.Zero;
        for (var attempt = 1; attempt <= 200; attempt++)
        {
            var delay = options.RetryDelay(attempt);
            Assert.True(delay >= previous, $"attempt {attempt}: {delay} < {previous}");
            Assert.True(delay <= options.RetryMaxDelay && delay >= options.RetryBaseDelay, $"attempt {attempt}: {delay}");
            previous = delay;
        }
        Assert.Equal(options.RetryMaxDelay, previous);
    }
}
