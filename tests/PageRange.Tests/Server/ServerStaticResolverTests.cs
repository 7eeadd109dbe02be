using System.Diagnostics.CodeAnalysis;
using MessagePack;
using MessagePack.Formatters;
using MessagePack.Resolvers;
using PageRange.Serialization;
using PageRange.Server;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Server;

/// <summary>
/// The documented path for trimmed and native AOT applications: options whose resolver knows every message type
/// statically (what MessagePack's generator writes), so the typed server and client never ask a dynamic resolver.
/// The message type is internal: MessagePack's dynamic resolver cannot make a formatter for it, so the call succeeds
/// only through the static one.
/// </summary>
[SuppressMessage("Trimming", "IL2026", Justification = "The annotated typed API, called with a static resolver: the documented suppression.")]
[SuppressMessage("AOT", "IL3050", Justification = "The annotated typed API, called with a static resolver: the documented suppression.")]
public sealed class ServerStaticResolverTests
{
    private static readonly MessagePackSerializerOptions s_static = MessagePackSerializerOptions.Standard
        .WithResolver(CompositeResolver.Create([PointFormatter.Instance], [BuiltinResolver.Instance]))
        .WithSecurity(MessagePackSecurity.UntrustedData);

    [Fact]
    public async Task TypedServerAndClient_StaticResolverOnly_InternalTypeRoundTrips()
    {
        string name = ControlHandshakeTests.UniqueName();
        var options = new PageRangeServerOptions { MaxThreads = 2, StartShrinkerMonitor = false };
        await using var server = PageRangeServer.Start(name, options, builder => builder
            .Map<Point, Point>(1, (point, _) => new Point(point.X * 2, point.Y + 1), s_static));
        await using PageRangeConnection client = await PageRangeConnection.ConnectAsync(name).AsTask().WaitAsync(TestTimeouts.Long);

        Point answer = await client.CallAsync<Point, Point>(new Point(21, 41), code: 1, options: s_static).AsTask().WaitAsync(TestTimeouts.Long);

        Assert.Equal(new Point(42, 42), answer);
        // The same call with the default (dynamic) resolver cannot serialize the internal type: the static path is what worked.
        await Assert.ThrowsAnyAsync<Exception>(() => client.CallAsync<Point, Point>(new Point(1, 1), code: 1).AsTask().WaitAsync(TestTimeouts.Long));
    }

    internal readonly record struct Point(int X, int Y);

    /// <summary>What a generated formatter looks like: a fixed array of two integers.</summary>
    private sealed class PointFormatter : IMessagePackFormatter<Point>
    {
        public static readonly PointFormatter Instance = new();

        public void Serialize(ref MessagePackWriter writer, Point value, MessagePackSerializerOptions options)
        {
            writer.WriteArrayHeader(2);
            writer.Write(value.X);
            writer.Write(value.Y);
        }

        public Point Deserialize(ref MessagePackReader reader, MessagePackSerializerOptions options)
        {
            if (reader.ReadArrayHeader() != 2)
            {
                throw new MessagePackSerializationException("A point is an array of two integers.");
            }
            return new Point(reader.ReadInt32(), reader.ReadInt32());
        }
    }
}
