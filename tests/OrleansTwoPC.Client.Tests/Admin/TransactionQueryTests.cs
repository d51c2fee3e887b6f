using CsCheck;
using OrleansTwoPC.Client.Tests.Cli;
using OrleansTwoPC.Client.Tests.Infrastructure;
using OrleansTwoPC.Storage.Records;

namespace OrleansTwoPC.Client.Tests.Admin;

/// <summary>The text form of a transaction query (admin API and <c>tpc list</c>): what is accepted, what is refused.</summary>
public sealed class TransactionQueryTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 30, 4, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Paging_outside_its_bounds_is_refused_and_inside_is_kept()
    {
        Gen.Int.Sample(n =>
        {
            var text = n.ToString(System.Globalization.CultureInfo.InvariantCulture);
            var offsetOk = n is >= 0 and <= TransactionQuery.MaxOffset;
            var limitOk = n is >= 1 and <= TransactionQuery.MaxLimit;
            Assert.Equal(offsetOk, Accepts(() => TransactionQuery.Parse(null, null, null, null, text, null, Now).Offset == n));
            Assert.Equal(limitOk, Accepts(() => TransactionQuery.Parse(null, null, null, null, null, text, Now).Limit == n));
        });
    }

    [Fact]
    public void Ages_count_back_from_now_and_instants_need_their_offset()
    {
        Gen.Select(Gen.Int[0, TransactionQuery.MaxAgeDays], Gen.Char["smhd"]).Sample((amount, unit) =>
        {
            var since = TransactionQuery.ParseTime($"{amount}{unit}", "since", Now);
            var age = unit switch { 's' => TimeSpan.FromSeconds(amount), 'm' => TimeSpan.FromMinutes(amount), 'h' => TimeSpan.FromHours(amount), _ => TimeSpan.FromDays(amount) };
            Assert.Equal(Now - age, since);
        });
        Assert.Equal(Now, TransactionQuery.ParseTime("2026-11-30T04:00:00Z", "since", Now));
        Assert.Equal(Now, TransactionQuery.ParseTime("2026-11-30T05:00:00+01:00", "since", Now));
        foreach (var bad in new[] { "2026-11-30T04:00:00", "yesterday", "-5m", "5 m", "m", "5w" })
            Assert.Contains("since must be", Assert.Throws<FormatException>(() => TransactionQuery.ParseTime(bad, "since", Now)).Message);
    }

    [Fact]
    public void Statuses_have_one_spelling_each()
    {
        foreach (var name in TransactionStatuses.Names)
        {
            Assert.True(TransactionStatuses.TryParse(name, out var status));
            Assert.Equal(name, TransactionStatuses.Name(status));
            Assert.Equal(status, TransactionQuery.Parse(name.ToUpperInvariant(), null, null, null, null, null, Now).Status);
        }
        Assert.False(TransactionStatuses.TryParse("in_doubt", out _));
        Assert.Contains("committed, aborted, in-doubt, in-flight",
            Assert.Throws<FormatException>(() => TransactionQuery.Parse("done", null, null, null, null, null, Now)).Message);
        Assert.Contains("must be before", Assert.Throws<FormatException>(() => TransactionQuery.Parse(null, "1m", "2m", null, null, null, Now)).Message);
    }

    private static bool Accepts(Func<bool> parse)
    {
        try
        {
            return parse();
        }
        catch (FormatException)
        {
            return false;
        }
    }
}

/// <summary><c>tpc list</c> refuses bad options with one line and exit 2, before touching any database.</summary>
public sealed class CliListUsageTests
{
    [Theory]
    [InlineData("--status", "lost", "--status must be one of committed, aborted, in-doubt, in-flight")]
    [InlineData("--since", "yesterday", "since must be an ISO 8601 time")]
    [InlineData("--limit", "0", "--limit: expected a whole number from 1 to 500")]
    [InlineData("--limit", "-3", "--limit: expected a whole number from 1 to 500")]
    [InlineData("--offset", "-1", "--offset: expected a whole number from 0 to 100000")]
    public async Task Bad_options_are_one_line_and_exit_2(string option, string value, string expected)
    {
        // The connection string points nowhere: a refusal must come before any connection attempt.
        var result = await Tpc.RunAsync("list", option, value, "--ConnectionStrings:PostgresServer=Host=127.0.0.1;Port=1;Username=nobody");
        CliUsageTests.AssertOneLineError(result, 2, expected);
    }

    [Fact]
    public async Task Since_after_until_is_refused()
    {
        var result = await Tpc.RunAsync("list", "--since", "1m", "--until", "2m", "--ConnectionStrings:PostgresServer=Host=127.0.0.1;Port=1;Username=nobody");
        CliUsageTests.AssertOneLineError(result, 2, "must be before");
    }
}
