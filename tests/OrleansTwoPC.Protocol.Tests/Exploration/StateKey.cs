using System.Buffers.Binary;
using System.Numerics;
using System.Runtime.InteropServices;

namespace OrleansTwoPC.Protocol.Tests.Exploration;

/// <summary>
/// The canonical form of a state as bytes, hashed to 128 bits. Every variable-length part is written with
/// its length first, so two different states never write the same bytes. One buffer is reused for every
/// state: building the key allocates nothing.
/// </summary>
internal sealed class StateKey
{
    private byte[] _buffer = new byte[512];
    private int _length;

    public void Clear() => _length = 0;

    public void Add(long value)
    {
        Ensure(8);
        BinaryPrimitives.WriteInt64LittleEndian(_buffer.AsSpan(_length), value);
        _length += 8;
    }

    public void Add(int value)
    {
        Ensure(4);
        BinaryPrimitives.WriteInt32LittleEndian(_buffer.AsSpan(_length), value);
        _length += 4;
    }

    public void Add(bool value)
    {
        Ensure(1);
        _buffer[_length++] = value ? (byte)1 : (byte)0;
    }

    public void Add(DateTimeOffset time) => Add(time.UtcTicks);

    /// <summary>No time and the earliest time differ: "none" is a tick count no time has.</summary>
    public void Add(DateTimeOffset? time) => Add(time is { } t ? t.UtcTicks : long.MinValue);

    public void Add(string? text)
    {
        if (text is null) { Add(-1); return; }
        var bytes = MemoryMarshal.AsBytes(text.AsSpan());
        Add(bytes.Length);
        Ensure(bytes.Length);
        bytes.CopyTo(_buffer.AsSpan(_length));
        _length += bytes.Length;
    }

    public void Add(UInt128 value)
    {
        Add((long)(ulong)value);
        Add((long)(ulong)(value >> 64));
    }

    public UInt128 Hash() => Hash128.Of(_buffer.AsSpan(0, _length));

    private void Ensure(int more)
    {
        if (_length + more <= _buffer.Length) return;
        Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + more));
    }
}

/// <summary>
/// MurmurHash3 (x64, 128 bits). Not cryptographic, which dedup does not need: with 10^8 states the chance
/// that two of them share a hash is below 10^-22.
/// </summary>
internal static class Hash128
{
    private const ulong C1 = 0x87c37b91114253d5UL;
    private const ulong C2 = 0x4cf5ad432745937fUL;

    public static UInt128 Of(ReadOnlySpan<byte> data)
    {
        ulong h1 = 0x9368e53c2f6af274UL, h2 = 0x586dcd208f7cd3fdUL;
        var blocks = data.Length / 16;
        for (var i = 0; i < blocks; i++)
        {
            var k1 = BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(i * 16));
            var k2 = BinaryPrimitives.ReadUInt64LittleEndian(data.Slice(i * 16 + 8));
            k1 *= C1; k1 = BitOperations.RotateLeft(k1, 31); k1 *= C2; h1 ^= k1;
            h1 = BitOperations.RotateLeft(h1, 27); h1 += h2; h1 = h1 * 5 + 0x52dce729;
            k2 *= C2; k2 = BitOperations.RotateLeft(k2, 33); k2 *= C1; h2 ^= k2;
            h2 = BitOperations.RotateLeft(h2, 31); h2 += h1; h2 = h2 * 5 + 0x38495ab5;
        }
        var tail = data.Slice(blocks * 16);
        Span<byte> padded = stackalloc byte[16];
        padded.Clear();
        tail.CopyTo(padded);
        if (tail.Length > 0)
        {
            var k1 = BinaryPrimitives.ReadUInt64LittleEndian(padded);
            var k2 = BinaryPrimitives.ReadUInt64LittleEndian(padded.Slice(8));
            k2 *= C2; k2 = BitOperations.RotateLeft(k2, 33); k2 *= C1; h2 ^= k2;
            k1 *= C1; k1 = BitOperations.RotateLeft(k1, 31); k1 *= C2; h1 ^= k1;
        }
        h1 ^= (ulong)data.Length; h2 ^= (ulong)data.Length;
        h1 += h2; h2 += h1;
        h1 = Mix(h1); h2 = Mix(h2);
        h1 += h2; h2 += h1;
        return new UInt128(h2, h1);
    }

    private static ulong Mix(ulong k)
    {
        k ^= k >> 33;
        k *= 0xff51afd7ed558ccdUL;
        k ^= k >> 33;
        k *= 0xc4ceb9fe1a85ec53UL;
        k ^= k >> 33;
        return k;
    }
}
