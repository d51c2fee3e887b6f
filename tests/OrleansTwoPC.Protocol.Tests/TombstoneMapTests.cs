using CsCheck;
using OrleansTwoPC.Protocol.Participant;

namespace OrleansTwoPC.Protocol.Tests;

/// <summary>
/// <see cref="TombstoneMap"/> against a plain dictionary doing the same: its contents, its snapshots (frozen, O(1),
/// naming what changed since the snapshot before), and expiry in order instead of by scanning.
/// </summary>
public sealed class TombstoneMapTests
{
    private static readonly DateTimeOffset Epoch = DateTimeOffset.UnixEpoch.AddYears(56);

    /// <summary>No limit: every expired tombstone goes.</summary>
    private const int All = int.MaxValue;

    private abstract record Op;
    private sealed record Set(string Id, int KeepSeconds, bool Commit) : Op;
    private sealed record Remove(string Id) : Op;
    private sealed record Expire(int NowSeconds, int? Limit) : Op;
    private sealed record TakeSnapshot : Op;
    private sealed record Clear : Op;

    // A few ids, so ids are often set again, removed and expired; times from a small range so equal keep-untils are common.
    private static readonly Gen<Op> Ops = Gen.Frequency(
        (6, Gen.Select(Gen.Int[0, 7].Select(i => $"tx-{i}"), Gen.Int[0, 12], Gen.Bool, (id, keep, commit) => (Op)new Set(id, keep, commit))),
        (2, Gen.Int[0, 7].Select(i => (Op)new Remove($"tx-{i}"))),
        (3, Gen.Select(Gen.Int[0, 14], Gen.Int[-1, 3], (now, limit) => (Op)new Expire(now, limit < 0 ? null : limit))),
        (3, Gen.Const((Op)new TakeSnapshot())),
        (1, Gen.Const((Op)new Clear())));

    [Fact]
    public void Holds_what_a_dictionary_holds_and_each_snapshot_names_every_tombstone_changed_since_the_one_before()
    {
        Ops.Array[0, 60].Sample(ops =>
        {
            var map = new TombstoneMap();
            var model = new Dictionary<string, DecidedTransaction>(StringComparer.Ordinal);
            var touched = new HashSet<string>(StringComparer.Ordinal);
            TombstoneMap? previous = null;
            Dictionary<string, DecidedTransaction>? previousContents = null;
            var snapshots = new List<(TombstoneMap Snapshot, Dictionary<string, DecidedTransaction> Contents)>();
            foreach (var op in ops)
            {
                switch (op)
                {
                    case Set s:
                        var tombstone = new DecidedTransaction { Outcome = s.Commit ? Decision.Commit : Decision.Abort, DecidedAt = Epoch, KeepUntil = Epoch.AddSeconds(s.KeepSeconds) };
                        map[s.Id] = tombstone;
                        model[s.Id] = tombstone;
                        touched.Add(s.Id);
                        break;
                    case Remove r:
                        Assert.Equal(model.Remove(r.Id), map.Remove(r.Id));
                        touched.Add(r.Id);
                        break;
                    case Expire e:
                        var now = Epoch.AddSeconds(e.NowSeconds);
                        var expired = model.Where(t => now > t.Value.KeepUntil).ToList();
                        if (e.Limit is { } limit)
                        {
                            // At most the limit, oldest first (which of equal keep-untils goes is the queue's choice).
                            Assert.Equal(Math.Min(limit, expired.Count), map.RemoveExpired(now, limit));
                            var gone = expired.Where(t => !map.ContainsKey(t.Key)).ToList();
                            var left = expired.Where(t => map.ContainsKey(t.Key)).ToList();
                            if (gone.Count > 0 && left.Count > 0)
                                Assert.True(gone.Max(t => t.Value.KeepUntil) <= left.Min(t => t.Value.KeepUntil));
                            expired = gone;
                        }
                        else
                        {
                            map.RemoveExpired(now, All);
                        }
                        foreach (var (id, _) in expired)
                        {
                            model.Remove(id);
                            touched.Add(id);
                        }
                        break;
                    case Clear:
                        touched.UnionWith(model.Keys);
                        model.Clear();
                        map.Clear();
                        break;
                    case TakeSnapshot:
                        var snapshot = map.Snapshot();
                        Assert.True(snapshot.IsReadOnly);
                        Assert.Same(map.Lineage, snapshot.Lineage);
                        var contents = new Dictionary<string, DecidedTransaction>(model, StringComparer.Ordinal);
                        if (previous is not null)
                        {
                            var changed = snapshot.ChangedSince(previous.Lineage, previous.Generation);
                            Assert.NotNull(changed);
                            // Everything that differs is named, and nothing that was never touched.
                            var differing = contents.Keys.Union(previousContents!.Keys)
                                .Where(id => !contents.TryGetValue(id, out var now) || !previousContents.TryGetValue(id, out var before) || !ReferenceEquals(now, before));
                            Assert.Superset(differing.ToHashSet(), changed.ToHashSet());
                            Assert.Subset(touched, changed.ToHashSet());
                            Assert.Empty(snapshot.ChangedSince(snapshot.Lineage, snapshot.Generation)!);
                        }
                        snapshots.Add((snapshot, contents));
                        previous = snapshot;
                        previousContents = contents;
                        touched.Clear();
                        break;
                }
                Assert.Equal(model.OrderBy(t => t.Key, StringComparer.Ordinal), map.OrderBy(t => t.Key, StringComparer.Ordinal));
                Assert.Equal(model.Count, map.Count);
            }
            // Later changes left every snapshot as it was taken.
            foreach (var (snapshot, contents) in snapshots)
                Assert.Equal(contents.OrderBy(t => t.Key, StringComparer.Ordinal), snapshot.OrderBy(t => t.Key, StringComparer.Ordinal));
        });
    }

    [Fact]
    public void A_negative_expiry_limit_is_refused_and_changes_nothing()
    {
        var map = new TombstoneMap();
        var id = $"tx-{Guid.NewGuid():N}";
        map[id] = new DecidedTransaction { Outcome = Decision.Abort, KeepUntil = Epoch };

        Assert.Throws<ArgumentOutOfRangeException>(() => map.RemoveExpired(Epoch.AddDays(1), -1));

        Assert.True(map.ContainsKey(id));
        Assert.Equal(0, map.RemoveExpired(Epoch.AddDays(1), 0));
        Assert.True(map.ContainsKey(id));
        Assert.Equal(1, map.RemoveExpired(Epoch.AddDays(1), 1));
        Assert.False(map.ContainsKey(id));
    }

    [Fact]
    public void A_snapshot_refuses_every_change_and_thaws_into_a_map_of_its_own_lineage()
    {
        var map = new TombstoneMap();
        var id = $"tx-{Guid.NewGuid():N}";
        map[id] = new DecidedTransaction { Outcome = Decision.Commit, KeepUntil = Epoch };
        var snapshot = map.Snapshot();
        var tombstone = new DecidedTransaction { Outcome = Decision.Abort, KeepUntil = Epoch };

        var refused = Assert.Throws<InvalidOperationException>(() => snapshot[id] = tombstone);
        Assert.Equal("a snapshot of the tombstones cannot change; thaw it first", refused.Message);
        Assert.Throws<InvalidOperationException>(() => snapshot.Remove(id));
        Assert.Throws<InvalidOperationException>(() => snapshot.RemoveExpired(Epoch.AddDays(1), All));
        Assert.Throws<InvalidOperationException>(snapshot.Clear);
        // Refused even when the change would change nothing.
        Assert.Throws<InvalidOperationException>(() => snapshot.Remove("tx-none"));
        Assert.Throws<InvalidOperationException>(() => snapshot.RemoveExpired(Epoch.AddDays(-1), All));
        Assert.Throws<InvalidOperationException>(new TombstoneMap().Snapshot().Clear);
        Assert.Same(map, map.Thaw());
        Assert.Same(snapshot, snapshot.Snapshot());
        Assert.Equal(Decision.Commit, snapshot[id].Outcome);

        var thawed = snapshot.Thaw();
        Assert.False(thawed.IsReadOnly);
        Assert.NotSame(map.Lineage, thawed.Lineage);
        thawed.RemoveExpired(Epoch.AddDays(1), All);
        Assert.Empty(thawed);
        Assert.Single(snapshot);
        Assert.Single(map);
        // A snapshot of another lineage, or one more than a generation back, names nothing: compare the whole map.
        Assert.Null(thawed.Snapshot().ChangedSince(map.Lineage, snapshot.Generation));
        map[id] = tombstone;
        map.Snapshot();
        Assert.Null(map.Snapshot().ChangedSince(map.Lineage, snapshot.Generation));
        Assert.Null(map.ChangedSince(map.Lineage, snapshot.Generation));
    }

    [Fact]
    public void A_tombstone_set_again_expires_at_its_new_time_not_at_the_old_one()
    {
        var map = new TombstoneMap();
        var id = $"tx-{Guid.NewGuid():N}";
        map[id] = new DecidedTransaction { Outcome = Decision.Abort, KeepUntil = Epoch.AddSeconds(1) };
        map.RemoveExpired(Epoch, All);
        map[id] = new DecidedTransaction { Outcome = Decision.Abort, KeepUntil = Epoch.AddSeconds(10) };

        map.RemoveExpired(Epoch.AddSeconds(5), All);
        Assert.True(map.ContainsKey(id));
        map.RemoveExpired(Epoch.AddSeconds(10), All);
        Assert.True(map.ContainsKey(id));
        map.RemoveExpired(Epoch.AddSeconds(10).AddTicks(1), All);
        Assert.False(map.ContainsKey(id));
    }

    [Fact]
    public void Its_dictionary_members_behave_as_a_dictionarys()
    {
        var (a, b) = ($"tx-{Guid.NewGuid():N}", $"tx-{Guid.NewGuid():N}");
        var first = new DecidedTransaction { Outcome = Decision.Commit, KeepUntil = Epoch };
        var second = new DecidedTransaction { Outcome = Decision.Abort, KeepUntil = Epoch.AddSeconds(1) };
        IDictionary<string, DecidedTransaction> map = new TombstoneMap();
        map.Add(a, first);
        map.Add(new KeyValuePair<string, DecidedTransaction>(b, second));
        var duplicate = Assert.Throws<ArgumentException>(() => map.Add(a, second));
        Assert.StartsWith($"a tombstone for '{a}' exists", duplicate.Message);
        Assert.Throws<ArgumentNullException>(() => map[a] = null!);
        Assert.Same(first, map[a]);

        Assert.True(map.Contains(new KeyValuePair<string, DecidedTransaction>(a, first)));
        Assert.False(map.Contains(new KeyValuePair<string, DecidedTransaction>(a, second)));
        Assert.Equal(new[] { a, b }.Order(StringComparer.Ordinal), map.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(2, map.Values.Count);
        var copied = new KeyValuePair<string, DecidedTransaction>[3];
        map.CopyTo(copied, 1);
        Assert.Equal(new[] { a, b }.Order(StringComparer.Ordinal), copied.Skip(1).Select(p => p.Key).Order(StringComparer.Ordinal));
        Assert.True(map.TryGetValue(b, out var found) && ReferenceEquals(found, second));
        Assert.False(map.TryGetValue("tx-none", out _));

        // A pair is removed only with the very tombstone it names.
        Assert.False(map.Remove(new KeyValuePair<string, DecidedTransaction>(a, second)));
        Assert.True(map.Remove(new KeyValuePair<string, DecidedTransaction>(a, first)));
        Assert.False(map.Remove(a));
        Assert.False(map.IsReadOnly);
        Assert.Equal(new[] { b }, map.Select(p => p.Key));
        Assert.Equal(new[] { b }, ((System.Collections.IEnumerable)map).Cast<KeyValuePair<string, DecidedTransaction>>().Select(p => p.Key));
    }
}
