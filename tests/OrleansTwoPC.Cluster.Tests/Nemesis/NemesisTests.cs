using System.Diagnostics;
using OrleansTwoPC.Cluster.Tests.Processes;
using Xunit.Abstractions;

namespace OrleansTwoPC.Cluster.Tests.Nemesis;

/// <summary>
/// Jepsen-style: three silo processes, each in its own network namespace, serve a stream of orders from
/// concurrent callers while a seeded schedule of real faults runs: a silo partitioned from its peers, a
/// silo cut from PostgreSQL only, one direction of a link dropped, a silo paused past the failure timeout
/// and resumed (the zombie), a silo SIGKILLed and restarted. Every order is recorded as invoked and then
/// committed, aborted, indeterminate (in doubt or an exception) or refused; after the faults stop, the
/// databases must agree with every answer and hold nothing in doubt.
/// </summary>
[Collection(SiloProcessCollection.Name)]
public sealed class NemesisTests(ITestOutputHelper output)
{
    private const int Silos = 3;
    private const int Callers = 8;

    [Fact]
    public async Task Orders_stay_all_or_nothing_through_partitions_pauses_and_kills()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("TWOPC_NEMESIS_SEED"), out var s) ? s : Environment.TickCount & 0xFFFF;
        var faults = int.TryParse(Environment.GetEnvironmentVariable("TWOPC_NEMESIS_FAULTS"), out var f) ? f : 6;
        output.WriteLine($"nemesis seed {seed}, {faults} faults (replay: TWOPC_NEMESIS_SEED={seed} TWOPC_NEMESIS_FAULTS={faults})");
        var random = new Random(seed);

        await using var cluster = await NemesisCluster.StartAsync(output, new NemesisSilo(), new NemesisSilo(), new NemesisSilo());
        var lab = cluster.Lab;
        cluster.StartOrders(Callers, seed, TimeSpan.FromMilliseconds(50));
        var blocking = cluster.Blocking;

        var kinds = new[] { "partition", "postgres", "one-way", "pause", "kill", "client" };
        var clock = Stopwatch.StartNew();
        for (var fault = 0; fault < faults; fault++)
        {
            await Task.Delay(TimeSpan.FromSeconds(2));
            var kind = fault < kinds.Length ? kinds[(fault + seed) % kinds.Length] : kinds[random.Next(kinds.Length)];
            var victim = random.Next(Silos);
            var other = (victim + 1 + random.Next(Silos - 1)) % Silos;
            var hold = TimeSpan.FromSeconds(4 + random.Next(4));
            output.WriteLine($"[{clock.Elapsed.TotalSeconds,5:0.0} s] {kind} silo {victim}{(kind == "one-way" ? $" -> silo {other}" : "")} for {hold.TotalSeconds:0} s ({cluster.History.Count} orders answered)");
            blocking.FaultStarts($"{kind} silo {victim}");
            switch (kind)
            {
                case "partition":
                    for (var peer = 0; peer < Silos; peer++) if (peer != victim) lab.Cut(victim, lab.AddressOf(peer));
                    await Task.Delay(hold);
                    lab.Heal(victim);
                    break;
                case "postgres":
                    lab.CutPort(victim, lab.GatewayAddress, cluster.Postgres.Port);
                    await Task.Delay(hold);
                    lab.Heal(victim);
                    break;
                case "one-way":
                    lab.Cut(victim, lab.AddressOf(other), bothWays: false);
                    await Task.Delay(hold);
                    lab.Heal(victim);
                    break;
                case "pause":
                    // Longer than the failure detection: the cluster declares it dead and re-activates its grains.
                    await cluster.PauseAsync(victim);
                    await Task.Delay(hold + TimeSpan.FromSeconds(4));
                    await cluster.ResumeAsync(victim);
                    break;
                case "kill":
                    cluster.Silos[victim]!.Kill();
                    await Task.Delay(hold);
                    await cluster.Silos[victim]!.DisposeAsync();
                    cluster.Silos[victim] = cluster.StartSilo(victim);
                    break;
                case "client":
                    // Calls through that gateway get no answer: the callers hear InDoubt and resubmit.
                    lab.CutClient(victim, cluster.Silos[victim]!.GatewayPort);
                    await Task.Delay(hold);
                    lab.HealClient();
                    break;
            }
            blocking.FaultStarts("no fault (after a heal)");
            // A silo that found itself declared dead (after a pause or a partition) stopped itself; like a
            // supervisor (compose's restart policy, a Kubernetes pod), start it again.
            for (var host = 0; host < Silos; host++)
            {
                if (cluster.Silos[host] is not { HasExited: true } stopped) continue;
                output.WriteLine($"[{clock.Elapsed.TotalSeconds,5:0.0} s] silo {host} stopped itself (exit code {stopped.ExitCode}); restarting it");
                await stopped.DisposeAsync();
                cluster.Silos[host] = cluster.StartSilo(host);
            }
        }
        var healedAt = DateTimeOffset.UtcNow;
        output.WriteLine($"[{clock.Elapsed.TotalSeconds,5:0.0} s] faults over; callers stop");
        await cluster.StopOrdersAsync();
        await cluster.VerifyAsync(healedAt);
        output.WriteLine($"longest reservation held while the faults ran: {blocking.Longest.TotalSeconds:0.0} s ({blocking.LongestWhere}, prepared during: {blocking.LongestDuring})");
        Assert.True(cluster.History.Count(o => o.Answer == NemesisAnswer.Committed) > 0, "no order committed: the run proves nothing");
        cluster.Passed();
    }
}
