using MessagePack;

namespace PingPong;

/// <summary>The request of the ping-pong: a sequence number and some bytes.</summary>
[MessagePackObject]
public sealed record Ping([property: Key(0)] long Seq, [property: Key(1)] byte[] Body);

/// <summary>The reply: the same sequence number.</summary>
[MessagePackObject]
public sealed record Pong([property: Key(0)] long Seq);

/// <summary>What the peer counted of the oneway stream.</summary>
[MessagePackObject]
public sealed record StreamReport([property: Key(0)] long Messages, [property: Key(1)] long Bytes, [property: Key(2)] ulong Checksum);

/// <summary>The peer's answer to <see cref="Codes.CompiledMethods"/>: how many methods its JIT has compiled so far.</summary>
[MessagePackObject]
public sealed record JitReport([property: Key(0)] long CompiledMethods);

/// <summary>The codes the sample uses.</summary>
internal static class Codes
{
    public const uint Ping = 1;
    public const uint Stream = 2;
    public const uint StreamEnd = 3;
    public const uint Quit = 4;
    public const uint CompiledMethods = 5;
}
