using System.Net.Sockets;

namespace PageRange.Benchmarks.CrossProcess;

/// <summary>A blocking byte stream: a socket used directly, or a <see cref="Stream"/> (pipes).</summary>
internal interface IByteStream : IDisposable
{
    /// <summary>Reads what the kernel has, at most <paramref name="destination"/>'s length; 0 at end of stream.</summary>
    int Read(Span<byte> destination);

    /// <summary>Writes all of <paramref name="source"/>.</summary>
    void Write(ReadOnlySpan<byte> source);
}

/// <summary>A connected blocking socket, through <see cref="Socket.Receive(Span{byte})"/> and <see cref="Socket.Send(ReadOnlySpan{byte})"/>: no stream wrapper in the way.</summary>
internal sealed class SocketByteStream(Socket socket) : IByteStream
{
    public int Read(Span<byte> destination) => socket.Receive(destination, SocketFlags.None);

    public void Write(ReadOnlySpan<byte> source)
    {
        while (!source.IsEmpty)
        {
            source = source[socket.Send(source, SocketFlags.None)..];
        }
    }

    public void Dispose() => socket.Dispose();
}

/// <summary>Pipes: an anonymous pipe pair (one stream each way) or a named pipe (one stream both ways).</summary>
internal sealed class PipeByteStream(Stream input, Stream output) : IByteStream
{
    public int Read(Span<byte> destination) => input.Read(destination);

    public void Write(ReadOnlySpan<byte> source) => output.Write(source);

    public void Dispose()
    {
        input.Dispose();
        if (!ReferenceEquals(input, output))
        {
            output.Dispose();
        }
    }
}

/// <summary>
/// Length-prefixed frames over a byte stream. The reader takes whatever the kernel has into a large buffer, so many
/// small frames arrive with one read: the most a baseline can do without changing what a message is.
/// </summary>
internal sealed class FrameChannel(IByteStream stream) : IDisposable
{
    // Room for several of the largest frames, so a read rarely has to move a partial frame to the front.
    private readonly byte[] _buffer = new byte[4 << 20];
    private int _start;
    private int _end;

    /// <summary>Reads the next frame; the spans stay valid until the next read.</summary>
    /// <param name="code">The frame's code.</param>
    /// <param name="frame">The whole frame, header included (what an echo sends back).</param>
    /// <returns>The payload.</returns>
    public ReadOnlySpan<byte> ReadFrame(out uint code, out ReadOnlySpan<byte> frame)
    {
        Ensure(BenchPayload.FrameHeaderSize);
        int length = BitConverter.ToInt32(_buffer, _start);
        code = BitConverter.ToUInt32(_buffer, _start + 4);
        int total = BenchPayload.FrameHeaderSize + length;
        if (length < 0 || total > _buffer.Length)
        {
            throw new InvalidOperationException($"A frame of {length} bytes does not fit the {_buffer.Length}-byte buffer.");
        }
        Ensure(total);
        frame = _buffer.AsSpan(_start, total);
        _start += total;
        if (_start == _end)
        {
            _start = _end = 0;
        }
        return frame[BenchPayload.FrameHeaderSize..];
    }

    public void Write(ReadOnlySpan<byte> frame) => stream.Write(frame);

    private void Ensure(int count)
    {
        if (_end - _start >= count)
        {
            return;
        }
        if (_buffer.Length - _start < count)
        {
            _buffer.AsSpan(_start, _end - _start).CopyTo(_buffer);
            _end -= _start;
            _start = 0;
        }
        while (_end - _start < count)
        {
            int read = stream.Read(_buffer.AsSpan(_end));
            if (read == 0)
            {
                throw new EndOfStreamException("The other process closed the stream.");
            }
            _end += read;
        }
    }

    public void Dispose() => stream.Dispose();
}

/// <summary>A kernel transport, measuring side: every message is one frame written with one call.</summary>
internal sealed class StreamHostTransport(string transport, FrameChannel channel, IDisposable? listener) : IHostTransport
{
    private static readonly byte[] s_stopFrame = BenchPayload.Frame(BenchCodes.Stop, []);

    public string Transport => transport;

    public string Mode => "blocking";

    public ulong RoundTrip(BenchPayload payload)
    {
        channel.Write(payload.PingFrame);
        ReadOnlySpan<byte> reply = channel.ReadFrame(out _, out _);
        return Checksum.Of(reply);
    }

    // A frame on a byte stream is a frame: a oneway and a call's request are the same bytes.
    public ulong OnewayRoundTrip(BenchPayload payload) => RoundTrip(payload);

    public void SendOneways(BenchPayload payload, int count)
    {
        for (int i = 0; i < count; i++)
        {
            channel.Write(payload.OnewayFrame);
        }
    }

    public StopReport Stop()
    {
        channel.Write(s_stopFrame);
        return StopReport.ReadFrom(channel.ReadFrame(out _, out _));
    }

    public void Dispose()
    {
        channel.Dispose();
        listener?.Dispose();
    }
}

/// <summary>A kernel transport, answering side: echoes the ping frame as it came, checksums streamed frames.</summary>
internal sealed class StreamPeerTransport(FrameChannel channel) : IPeerTransport
{
    public void Serve()
    {
        var tally = new ServeTally();
        byte[] reply = new byte[BenchPayload.FrameHeaderSize + StopReport.Size];
        while (true)
        {
            ReadOnlySpan<byte> payload = channel.ReadFrame(out uint code, out ReadOnlySpan<byte> frame);
            switch (code)
            {
                case BenchCodes.Ping:
                    tally.AddEcho(payload.Length);
                    ReplyDelay.Apply();
                    channel.Write(frame);
                    break;
                case BenchCodes.Oneway:
                    tally.Add(payload);
                    break;
                case BenchCodes.Stop:
                    BenchPayload.WriteHeader(reply, BenchCodes.Stop, StopReport.Size);
                    tally.Report.WriteTo(reply.AsSpan(BenchPayload.FrameHeaderSize));
                    channel.Write(reply);
                    return;
                default:
                    throw new InvalidOperationException($"Unknown frame code {code}.");
            }
        }
    }

    public void Dispose() => channel.Dispose();
}
