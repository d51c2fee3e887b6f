using Microsoft.Extensions.Configuration;
using OrleansTwoPC.Protocol;
using OrleansTwoPC.Silo.Hosting;

namespace OrleansTwoPC.Cluster.Tests.Participants;

/// <summary><c>TwoPC:Protocol:MaxPrepareDeadlineAhead</c> binds like the other protocol settings and follows the prepare timeout when unset.</summary>
public sealed class PrepareDeadlineBoundSettingTests
{
    private static ProtocolOptions Bind(params (string Key, string Value)[] settings)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>($"{TwoPhaseCommitSiloExtensions.ProtocolSection}:{s.Key}", s.Value)))
            .Build();
        var options = new ProtocolOptions();
        configuration.GetSection(TwoPhaseCommitSiloExtensions.ProtocolSection).Bind(options);
        options.Validate();
        return options;
    }

    [Fact]
    public void The_bound_is_read_from_configuration()
    {
        Assert.Equal(TimeSpan.FromSeconds(9), Bind(("MaxPrepareDeadlineAhead", "00:00:09")).MaxPrepareDeadlineAhead);
    }

    [Fact]
    public void Unset_it_is_four_prepare_timeouts_of_whatever_prepare_timeout_is_configured()
    {
        Assert.Equal(TimeSpan.FromSeconds(20), Bind().MaxPrepareDeadlineAhead);
        Assert.Equal(TimeSpan.FromSeconds(48), Bind(("PrepareTimeout", "00:00:12"), ("DecisionRetention", "00:01:00")).MaxPrepareDeadlineAhead);
    }

    [Fact]
    public void A_bound_not_above_the_prepare_timeout_is_refused_naming_the_setting()
    {
        var error = Assert.Throws<ArgumentException>(() => Bind(("MaxPrepareDeadlineAhead", "00:00:05")));
        Assert.Contains("MaxPrepareDeadlineAhead", error.Message);
    }
}
