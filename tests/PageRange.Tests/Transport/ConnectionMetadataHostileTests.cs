using PageRange.Tests.CrossProcess;
using PageRange.Tests.Diagnostics;
using PageRange.Tests.Infrastructure;
using PageRange.Transport;
using static PageRange.Tests.Infrastructure.Poll;
using Xunit.Abstractions;

namespace PageRange.Tests.Transport;

/// <summary>A raw peer sends malformed metadata blocks: the victim closes that connection and lets go of its resources.</summary>
[Trait("Category", "Hostile")]
public sealed class ConnectionMetadataHostileTests(ITestOutputHelper output)
{
    public static TheoryData<string, byte[]> BadBlocks() => new()
    {
        { "unknown version", [9, 0, 0, 0, 0, 0, 0, 0] },
        { "unknown field", [1, 4, 0, 0, 0, 0, 0, 0] },
        { "too many pairs", [1, 0, 17, 0, 0, 0, 0, 0] },
        { "pair past the end", [1, 0, 1, 0, 200, 0, (byte)'k', 0] },
        { "empty key", [1, 0, 1, 0, 0, 0, 0, 0] },
        { "key with a space", [1, 0, 1, 0, 1, 0, (byte)' ', 0, 0, 0, 0, 0, 0, 0, 0, 0] },
        { "bad UTF-8 value", [1, 0, 1, 0, 1, 0, (byte)'k', 1, 0, 0xFF, 0, 0, 0, 0, 0, 0] },
        { "duplicate key", [1, 0, 2, 0, 1, 0, (byte)'k', 0, 0, 1, 0, (byte)'k', 0, 0, 0, 0] },
        { "non-zero padding", [1, 0, 0, 0, 0, 0, 0, 7] },
        { "a whole word of padding", [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0] },
        { "negative deadline", [1, 1, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0] },
        { "zero trace id", [1, 2, 0, 0, .. new byte[16], 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0] },
    };

    [Theory]
    [MemberData(nameof(BadBlocks))]
    public async Task RawPeer_BadMetadataBlock_VictimClosesTheConnectionAndReleasesItsRegions(string what, byte[] block)
    {
        await using RawAttack attack = await RawAttack.StartAsync();
        (RawPeer attacker, PageRangeConnection victim) = attack;
        string victimRegion = attack.RegionName;
        (int Descriptors, int Mappings) connected = FaultResources.Naming(victimRegion);

        // First an honest block: delivered, so the bad one below is what closes the connection.
        byte[] honest = [1, 0, 1, 0, 1, 0, (byte)'k', 1, 0, (byte)'v', 0, 0, 0, 0, 0, 0];
        Assert.True(attacker.Outbound.TrySend(1, 5, TransactionFlags.Oneway, [7], new RecordContext(0, 0, CallStatus.Ok, honest)));
        using (Transaction delivered = await victim.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long))
        {
            Assert.Equal([new("k", "v")], delivered.Metadata);
            Assert.Equal([7], delivered.Payload.ToArray());
        }

        Assert.True(attacker.Outbound.TrySend(2, 5, TransactionFlags.TwoWay, [1, 2, 3], new RecordContext(9, 0, CallStatus.Ok, block)), what);
        ProtocolViolationException violation = await Assert.ThrowsAsync<ProtocolViolationException>(
            () => victim.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long));
        output.WriteLine($"{what}: {violation.Message}");
        Assert.True(victim.PeerDied.IsCancellationRequested, what);
        await WaitUntilAsync(() => FaultResources.Naming(victimRegion).Descriptors <= connected.Descriptors - 2, "the victim closed both regions' descriptors");
        await WaitUntilAsync(() => FaultResources.Naming(victimRegion).Mappings < connected.Mappings, "the victim unmapped its region");
        Assert.Equal(0, victim.LiveIncomingTransactions);
        Assert.Throws<ObjectDisposedException>(() => victim.Inbound.Region.ResidentBytes);
    }
}
