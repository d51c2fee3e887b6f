using System.Diagnostics;
using Xunit.Abstractions;

namespace OrleansTwoPC.Protocol.Tests.Simulation;

/// <summary>
/// Seeded simulation of the protocol core (see <see cref="SimulationDriver"/>). A failure message names the
/// seed and the step; to replay it, add the seed to <see cref="OneSeed"/> and run that test alone:
/// <c>dotnet test tests/OrleansTwoPC.Protocol.Tests --filter "FullyQualifiedName~SimulationTests.OneSeed"</c>.
/// More seeds: set TWOPC_SIM_SEEDS (count) and optionally TWOPC_SIM_FIRST_SEED before running ManySeeds.
/// </summary>
public sealed class SimulationTests(ITestOutputHelper output)
{
    private const int DefaultSeedCount = 300;

    [Theory]
    [InlineData(1)]
    [InlineData(42)]
    [InlineData(1234)]
    [InlineData(20250101)]
    public void OneSeed(int seed)
    {
        var report = SimulationDriver.Run(seed);
        output.WriteLine($"seed {seed}: {report.Steps} steps, {report.SimulatedTime.TotalSeconds:0.0} s simulated");
        foreach (var (name, count) in report.Stats.OrderBy(s => s.Key, StringComparer.Ordinal)) output.WriteLine($"  {name}: {count}");
    }

    [Fact]
    public void ManySeeds_KeepEveryInvariant_AndExerciseEveryFault()
    {
        var count = int.TryParse(Environment.GetEnvironmentVariable("TWOPC_SIM_SEEDS"), out var n) && n > 0 ? n : DefaultSeedCount;
        var first = int.TryParse(Environment.GetEnvironmentVariable("TWOPC_SIM_FIRST_SEED"), out var f) ? f : 1;
        var totals = new Dictionary<string, int>();
        var failures = new List<string>();
        var steps = 0L;
        var clock = Stopwatch.StartNew();

        for (var seed = first; seed < first + count; seed++)
        {
            try
            {
                var report = SimulationDriver.Run(seed);
                steps += report.Steps;
                foreach (var (name, value) in report.Stats) totals[name] = totals.GetValueOrDefault(name) + value;
            }
            catch (SimulationFailure failure)
            {
                failures.Add(failure.Message);
            }
        }

        output.WriteLine($"{count} seeds from {first}: {steps} steps in {clock.Elapsed.TotalSeconds:0.0} s, {failures.Count} failed");
        foreach (var (name, value) in totals.OrderBy(s => s.Key, StringComparer.Ordinal)) output.WriteLine($"  {name}: {value}");
        Assert.True(failures.Count == 0, $"{failures.Count} of {count} seeds failed; first failure:\n{failures.FirstOrDefault()}\nfailing seeds: {string.Join(", ", failures.Select(f => f.Split(' ')[2]))}");

        // The run is only worth something if every kind of fault and every protocol path actually happened.
        foreach (var expected in new[]
                 {
                     "transactions committed", "transactions aborted", "presumed abort",
                     "client told commit", "client told abort",
                     "coordinator crash", "participant crash", "write landed during crash",
                     "decision write failed", "completion write failed", "client retry began again",
                     "message dropped", "message duplicated", "message delayed long", "timer early", "timer late",
                     "prepare call failed", "phase-two retry", "inquiry sent", "inquiry answered", "inquiry pending",
                     "prepare Reserved", "prepare Refused", "prepare AlreadyPrepared", "prepare AlreadyAborted", "prepare DeadlinePassed",
                     "Commit Applied", "Commit Repeated", "Abort Released", "Abort Repeated", "Abort RecordedUnknownRollback",
                     "prepare OtherAttempt", "duplicate activation began", "duplicate insert refused",
                     "duplicate prepare Reserved", "duplicate prepare OtherAttempt", "Commit DroppedStaleAttempt",
                 })
            Assert.True(totals.GetValueOrDefault(expected) > 0, $"over {count} seeds the simulation never produced '{expected}'");
    }

    [Fact]
    public void ASeed_ReplaysExactly()
    {
        var first = SimulationDriver.Run(7);
        var second = SimulationDriver.Run(7);
        Assert.Equal(first.Steps, second.Steps);
        Assert.Equal(first.Digest, second.Digest);
        Assert.Equal(first.Stats.OrderBy(s => s.Key), second.Stats.OrderBy(s => s.Key));
        Assert.NotEqual(first.Digest, SimulationDriver.Run(8).Digest);
    }

    [Fact]
    public void TheChecksBite_WhenPhaseTwoStartsBeforeTheDecisionIsDurable()
    {
        var failure = FirstFailure(new SimulationSettings { BugSendDecisionBeforeItIsDurable = true });
        Assert.Contains("whose durable decision is", failure);
        Assert.Contains("replay:", failure);
    }

    [Fact]
    public void TheChecksBite_WhenAParticipantVotesYesBeforeItsPrepareIsDurable()
    {
        var failure = FirstFailure(new SimulationSettings { BugVoteYesBeforePrepareIsDurable = true });
        Assert.Matches("commit decided while .* is durably|never durably prepared", failure);
    }

    [Fact]
    public void TheChecksBite_WhenAParticipantIgnoresWhichAttemptACommitNames()
    {
        // Duplicate activations reserve again after the tombstone is gone; committing "whatever is prepared"
        // applies such a reservation a second time.
        var failure = FirstFailure(new SimulationSettings { BugIgnoreAttempts = true });
        Assert.Matches("a second time|consumed .* sum to", failure);
    }

    [Fact]
    public void DuplicateActivations_AreExercised_EachEndsInARefusedInsert_AndStaleReservationsAreDropped()
    {
        var totals = new Dictionary<string, int>();
        for (var seed = 1; seed <= 40; seed++)
            foreach (var (name, value) in SimulationDriver.Run(seed, new SimulationSettings { DuplicateActivationRate = 1.0 }).Stats)
                totals[name] = totals.GetValueOrDefault(name) + value;
        Assert.True(totals.GetValueOrDefault("duplicate activation began") > 0);
        Assert.Equal(totals.GetValueOrDefault("duplicate activation began"), totals.GetValueOrDefault("duplicate insert refused"));
        Assert.True(totals.GetValueOrDefault("duplicate prepare Reserved") > 0, "no duplicate activation ever reserved: the scenario was not exercised");
        Assert.True(totals.GetValueOrDefault("Commit DroppedStaleAttempt") > 0, "no stale reservation of a committed transaction was ever dropped");
    }

    private string FirstFailure(SimulationSettings broken)
    {
        for (var seed = 1; seed <= 100; seed++)
        {
            try
            {
                SimulationDriver.Run(seed, broken);
            }
            catch (SimulationFailure failure)
            {
                Assert.StartsWith($"simulation seed {seed} failed at step ", failure.Message);
                output.WriteLine(failure.Message.Split('\n')[0]);
                return failure.Message;
            }
        }
        Assert.Fail("a deliberately broken host survived 100 seeds: the simulation does not check what it claims");
        return "";
    }
}
