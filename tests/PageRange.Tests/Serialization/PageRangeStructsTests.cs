using System.Runtime.InteropServices;
using PageRange.Serialization;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;

namespace PageRange.Tests.Serialization;

/// <summary>
/// Fixed-layout messages over a real connection: structs arrive as sent, in order, packed (small) or in buffers of
/// their own (large); calls and replies round-trip sync and async; a payload of the wrong size fails that transaction
/// only, and its buffer goes back.
/// </summary>
public sealed class PageRangeStructsTests
{
    private const uint QuoteCode = 21;
    private const uint GarbageCode = 22;

    /// <summary>A 40-byte message with no padding: what a market-data sidecar sends many times a second.</summary>
    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    internal struct Quote
    {
        public long Sequence;
        public long InstrumentId;
        public double Bid;
        public double Ask;
        public int BidSize;
        public int AskSize;

        public static Quote Sample(long sequence) => new()
        {
            Sequence = sequence,
            InstrumentId = 7_000_000_000 + sequence,
            Bid = 100.25 + sequence,
            Ask = 100.5 + sequence,
            BidSize = (int)sequence * 3,
            AskSize = -(int)sequence,
        };
    }

    /// <summary>Larger than a pack entry (<c>PackLayout.MaxPayload</c>), so it travels in a buffer of its own.</summary>
    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    internal struct Frame
    {
        public long Sequence;
        public FramePixels Pixels;

        public static Frame Sample(long sequence)
        {
            Frame frame = default;
            frame.Sequence = sequence;
            Span<byte> pixels = frame.Pixels;
            for (int i = 0; i < pixels.Length; i++)
            {
                pixels[i] = (byte)(i * 31 + sequence);
            }
            return frame;
        }

        public readonly bool SameAs(in Frame other) =>
            Sequence == other.Sequence && ((ReadOnlySpan<byte>)Pixels).SequenceEqual(other.Pixels);
    }

    [System.Runtime.CompilerServices.InlineArray(1016)]
    internal struct FramePixels
    {
        private byte _first;
    }

    [StructLayout(LayoutKind.Sequential, Pack = 1)]
    internal struct Fill
    {
        public long Sequence;
        public double Price;
    }

    [Fact]
    public async Task SendOnewayStruct_SmallAndLarge_ArriveAsSentAndInOrder()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        // More than the ring holds (64 records) and than a pack holds, so packs and their frees turn over too.
        for (int round = 0; round < 4; round++)
        {
            for (long i = 0; i < 150; i++)
            {
                pair.Client.SendOnewayStruct(QuoteCode, Quote.Sample(round * 1000 + i));
            }
            for (long i = 0; i < 150; i++)
            {
                using Transaction received = pair.Server.Receive();
                Assert.Equal(QuoteCode, received.Code);
                Assert.Equal(Marshal.SizeOf<Quote>(), received.Length);
                Assert.Equal(Quote.Sample(round * 1000 + i), received.ReadStruct<Quote>());
            }
        }
        for (long i = 0; i < 20; i++)
        {
            await pair.Client.SendOnewayStructAsync(QuoteCode + 1, Frame.Sample(i));
            using Transaction received = pair.Server.Receive();
            Assert.Equal(1024, received.Length);
            Frame expected = Frame.Sample(i);
            Assert.True(received.ReadStruct<Frame>().SameAs(expected), $"frame {i} differs");
        }
        Assert.Equal(0, pair.Server.LiveIncomingTransactions);
    }

    [Fact]
    public async Task CallStruct_SyncAndAsyncRepliesOfBothKinds_RoundTrip()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        Task server = pair.Serve(call =>
        {
            Quote quote = call.ReadStruct<Quote>();
            var fill = new Fill { Sequence = quote.Sequence, Price = quote.Ask };
            if (quote.Sequence % 2 == 0)
            {
                call.ReplyStruct(fill);
            }
            else
            {
                call.ReplyStructAsync(fill).AsTask().Wait(TestTimeouts.Long);
            }
        });

        for (long i = 0; i < 40; i++)
        {
            Fill fill = i % 3 == 0
                ? await pair.Client.CallStructAsync<Quote, Fill>(QuoteCode, Quote.Sample(i), TestTimeouts.Long)
                : pair.Client.CallStruct<Quote, Fill>(QuoteCode, Quote.Sample(i), TestTimeouts.Long);
            Assert.Equal(i, fill.Sequence);
            Assert.Equal(Quote.Sample(i).Ask, fill.Price);
        }
        Assert.Equal(0, pair.Client.LiveIncomingTransactions);
        await pair.DisposeAsync();
        await server.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task ReadStruct_PeerSendsTheWrongSize_ThrowsInvalidMessageAndTheConnectionKeepsWorking()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        int size = Marshal.SizeOf<Quote>();
        // A raw peer: one byte short, one byte over, nothing, and a large buffer of its own.
        foreach (int length in new[] { size - 1, size + 1, 0, 4096 })
        {
            pair.Client.SendOneway(GarbageCode, new byte[length]);
            using Transaction received = pair.Server.Receive();
            var error = Assert.Throws<InvalidMessageException>(() => received.ReadStruct<Quote>());
            Assert.Contains($"code {GarbageCode}, {length} bytes", error.Message, StringComparison.Ordinal);
            Assert.Contains($"is not a Quote, which takes {size} bytes", error.Message, StringComparison.Ordinal);
            // The transaction is still live and readable as bytes; only the struct read failed.
            Assert.Equal(length, received.Payload.Length);
        }
        Assert.Equal(0, pair.Server.LiveIncomingTransactions);
        // Every buffer went back: a stream larger than the ring and the packs still gets through whole.
        for (long i = 0; i < 300; i++)
        {
            pair.Client.SendOnewayStruct(QuoteCode, Quote.Sample(i));
            using Transaction received = pair.Server.Receive();
            Assert.Equal(Quote.Sample(i), received.ReadStruct<Quote>());
        }
    }

    [Fact]
    [Trait("Category", "Hostile")]
    public async Task CallStruct_PeerRepliesTheWrongSize_ThrowsInvalidMessageAndFreesTheReply()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        // A raw handler: replies one byte short of a Fill to every odd request.
        Task server = pair.Serve(call =>
        {
            Quote quote = call.ReadStruct<Quote>();
            if (quote.Sequence % 2 == 1)
            {
                call.Reply(new byte[Marshal.SizeOf<Fill>() - 1]);
            }
            else
            {
                call.ReplyStruct(new Fill { Sequence = quote.Sequence, Price = quote.Bid });
            }
        });

        for (long i = 0; i < 100; i++)
        {
            if (i % 2 == 1)
            {
                Exception error = i % 4 == 1
                    ? Assert.Throws<InvalidMessageException>(() => pair.Client.CallStruct<Quote, Fill>(QuoteCode, Quote.Sample(i), TestTimeouts.Long))
                    : await Assert.ThrowsAsync<InvalidMessageException>(
                        () => pair.Client.CallStructAsync<Quote, Fill>(QuoteCode, Quote.Sample(i), TestTimeouts.Long).AsTask());
                Assert.Contains("is not a Fill, which takes 16 bytes", error.Message, StringComparison.Ordinal);
            }
            else
            {
                Assert.Equal(i, pair.Client.CallStruct<Quote, Fill>(QuoteCode, Quote.Sample(i), TestTimeouts.Long).Sequence);
            }
            // The bad reply was freed before the exception left the call.
            Assert.Equal(0, pair.Client.LiveIncomingTransactions);
        }
        await pair.DisposeAsync();
        await server.WaitAsync(TestTimeouts.Long);
    }

    [Fact]
    public async Task Structs_NullConnectionOrDisposedTransaction_ThrowTypedErrors()
    {
        PageRangeConnection? none = null;
        Assert.Throws<ArgumentNullException>("connection", () => none!.SendOnewayStruct(QuoteCode, Quote.Sample(1)));
        Assert.Throws<ArgumentNullException>("connection", () => none!.CallStruct<Quote, Fill>(QuoteCode, Quote.Sample(1)));
        await Assert.ThrowsAsync<ArgumentNullException>("connection", () => none!.SendOnewayStructAsync(QuoteCode, Quote.Sample(1)).AsTask());
        await Assert.ThrowsAsync<ArgumentNullException>("connection", () => none!.CallStructAsync<Quote, Fill>(QuoteCode, Quote.Sample(1)).AsTask());
        Assert.Throws<ObjectDisposedException>(() => default(Transaction).ReadStruct<Quote>());
        Assert.Throws<ObjectDisposedException>(() => default(Transaction).ReplyStruct(new Fill()));

        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        pair.Client.SendOnewayStruct(QuoteCode, Quote.Sample(1));
        Transaction received = pair.Server.Receive();
        received.Dispose();
        Assert.Throws<ObjectDisposedException>(() => received.ReadStruct<Quote>());
        // A oneway cannot be answered, struct or not.
        pair.Client.SendOnewayStruct(QuoteCode, Quote.Sample(2));
        using Transaction oneway = pair.Server.Receive();
        Assert.Throws<InvalidOperationException>(() => oneway.ReplyStruct(new Fill()));
    }

    [OptimizedBuildFact]
    public async Task SendOnewayStructAndReadStruct_SteadyState_AllocateNothing()
    {
        await using ConnectedPair pair = await ConnectedPair.CreateAsync();
        const int Batch = 100;
        long checksum = 0;
        void Stream(int batches)
        {
            for (int b = 0; b < batches; b++)
            {
                for (long i = 0; i < Batch; i++)
                {
                    pair.Client.SendOnewayStruct(QuoteCode, Quote.Sample(i));
                }
                for (int i = 0; i < Batch; i++)
                {
                    using Transaction received = pair.Server.Receive();
                    checksum += received.ReadStruct<Quote>().Sequence;
                }
            }
        }
        Stream(200);
        // Up to three windows of 20,000 messages, until one allocates nothing: a one-off of the runtime's (a method's
        // first compilation at a higher tier, seen as 32 B in one window with the other test classes running in
        // parallel) lands in one window; a cost per message shows in every one (24 B at least, 480 KB per window).
        var windows = new List<long>();
        for (int window = 0; window < 3 && (windows.Count == 0 || windows[^1] != 0); window++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            Stream(200);
            windows.Add(GC.GetAllocatedBytesForCurrentThread() - before);
        }
        Assert.True(windows[^1] == 0, $"allocated per window of 20,000: {string.Join(", ", windows)} B");
        Assert.Equal((200L + 200 * windows.Count) * (Batch * (Batch - 1) / 2), checksum);
    }
}
