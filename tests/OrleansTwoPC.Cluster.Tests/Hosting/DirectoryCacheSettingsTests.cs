using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Orleans.Configuration;
using Orleans.TestingHost;
using OrleansTwoPC.Cluster.Tests.Infrastructure;
using OrleansTwoPC.Silo.Hosting;
using OrleansTwoPC.Storage;

namespace OrleansTwoPC.Cluster.Tests.Hosting;

/// <summary>
/// The grain directory cache is bounded for a workload that activates two new grains per order: Orleans' default
/// (a million addresses, about 230 B each) let the heap grow for minutes under sustained load.
/// </summary>
[Collection(ClusterCollection.Name)]
public sealed class DirectoryCacheSettingsTests(TwoPcClusterFixture fixture)
{
    private static int CacheSizeWith(params (string Key, string Value)[] settings)
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(settings.Select(s => new KeyValuePair<string, string?>(s.Key, s.Value)));
        var unused = "Host=127.0.0.1;Port=1;Database=unused";
        builder.UseOrleans(silo => silo.AddTwoPhaseCommit(new ServiceDatabases(unused, unused, unused, unused), builder.Configuration));
        using var host = builder.Build();
        return host.Services.GetRequiredService<IOptions<GrainDirectoryOptions>>().Value.CacheSize;
    }

    [Fact]
    public void Every_silo_of_a_running_cluster_caches_at_most_the_products_bound()
    {
        foreach (var silo in fixture.Cluster.Silos.OfType<InProcessSiloHandle>())
            Assert.Equal(TwoPhaseCommitSiloExtensions.DefaultDirectoryCacheSize, silo.SiloHost.Services.GetRequiredService<IOptions<GrainDirectoryOptions>>().Value.CacheSize);
        Assert.True(TwoPhaseCommitSiloExtensions.DefaultDirectoryCacheSize < GrainDirectoryOptions.DEFAULT_CACHE_SIZE);
    }

    [Fact]
    public void Configuration_sets_another_size()
    {
        var size = Random.Shared.Next(1, 5_000_000);
        Assert.Equal(size, CacheSizeWith((TwoPhaseCommitSiloExtensions.DirectoryCacheSizeKey, size.ToString(System.Globalization.CultureInfo.InvariantCulture))));
        Assert.Equal(0, CacheSizeWith((TwoPhaseCommitSiloExtensions.DirectoryCacheSizeKey, "0")));
        Assert.Equal(TwoPhaseCommitSiloExtensions.DefaultDirectoryCacheSize, CacheSizeWith());
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("many")]
    [InlineData("1e6")]
    [InlineData("99999999999")]
    public void A_size_that_is_not_a_whole_number_from_0_is_a_clear_error(string text)
    {
        var error = Assert.Throws<SiloStartupException>(() => CacheSizeWith((TwoPhaseCommitSiloExtensions.DirectoryCacheSizeKey, text)));
        Assert.Equal($"TwoPC:DirectoryCacheSize must be a whole number from 0 to {int.MaxValue}, not '{text}'", error.Message);
    }
}
