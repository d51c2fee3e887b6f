using CsCheck;

namespace OrleansTwoPC.Protocol.Tests.Exploration;

/// <summary>The explorer's table of seen states: every state of a hash is found, and only those, however large it grows.</summary>
public sealed class FingerprintTableTests
{
    [Fact]
    public void EveryStateOfAHash_IsFound_AndNoOther_AsTheTableGrows()
    {
        // Up to twice the first table's capacity, so that it grows; hashes repeat (one form, several budget vectors),
        // and many share their low half (the slot) but not their high half.
        Gen.Select(Gen.Int[1, 100_000], Gen.Int).Sample((count, seed) =>
        {
            var random = new Random(seed);
            var table = new FingerprintTable();
            var expected = new Dictionary<UInt128, List<int>>();
            for (var id = 0; id < count; id++)
            {
                var low = (ulong)random.Next(0, Math.Max(1, count / 2)) * 0x9E3779B97F4A7C15UL;
                var hash = new UInt128((ulong)random.Next(0, 3), low);
                table.Add(hash);
                if (!expected.TryGetValue(hash, out var ids)) expected[hash] = ids = new List<int>();
                ids.Add(id);
            }
            Assert.Equal(count, table.Count);
            foreach (var (hash, ids) in expected)
            {
                var found = new List<int>();
                var cursor = -1;
                while (table.Next(hash, ref cursor, out var state)) found.Add(state);
                found.Sort();
                Assert.Equal(ids, found);
            }
            var absent = new UInt128(3, 1);
            var start = -1;
            Assert.False(table.Next(absent, ref start, out _));
        }, iter: 20);
    }
}
