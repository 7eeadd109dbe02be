using PageRange.Tests.CrossProcess;
using PageRange.Tests.Infrastructure;
using PageRange.Tests.Transport;
using PageRange.Transport;

namespace PageRange.Tests.Diagnostics;

/// <summary>
/// The stage of a hostile test: a listener, a <see cref="RawPeer"/> connected to it (the attacker) and the connection
/// the listener accepted from it (the victim), plus any honest neighbours on the same listener. Disposing it disposes
/// all of them, whatever the test did to them (a victim the attack closed is disposed again, which is allowed).
/// </summary>
/// <remarks>Made by <see cref="StartAsync"/>, which owns what it made until the attack is built.</remarks>
internal sealed class RawAttack(string name, PageRangeOptions options, PageRangeListener listener, RawPeer attacker, PageRangeConnection victim)
    : IAsyncDisposable
{
    private readonly List<PageRangeConnection> _neighbours = [];

    /// <summary>The listener's name, unique to this attack.</summary>
    public string Name { get; } = name;

    /// <summary>The options of the listener, the attacker and any neighbour.</summary>
    public PageRangeOptions Options { get; } = options;

    public PageRangeListener Listener { get; } = listener;

    /// <summary>The raw peer: it may write anything into the victim's region.</summary>
    public RawPeer Attacker { get; } = attacker;

    /// <summary>The connection the listener accepted from <see cref="Attacker"/>.</summary>
    public PageRangeConnection Victim { get; } = victim;

    /// <summary>
    /// What the descriptors and mappings of this listener's regions are named after (<c>FaultResources.Naming</c> counts
    /// them): the victim's, the attacker's and any neighbour's all carry it.
    /// </summary>
    public string RegionName => $"pagerange:{Name}";

    /// <summary>Listens on a unique name with <paramref name="options"/> (<see cref="ConnectionPair.DefaultOptions"/> by default), connects a raw peer and accepts it.</summary>
    public static async Task<RawAttack> StartAsync(PageRangeOptions? options = null)
    {
        options ??= ConnectionPair.DefaultOptions();
        string name = ControlHandshakeTests.UniqueName();
        PageRangeListener listener = PageRangeListener.Listen(name, options);
        RawPeer? attacker = null;
        try
        {
            Task<PageRangeConnection> accepting = listener.AcceptAsync().AsTask();
            attacker = await RawPeer.ConnectAsync(name, options);
            PageRangeConnection victim = await accepting.WaitAsync(TestTimeouts.Long);
            return new RawAttack(name, options, listener, attacker, victim);
        }
        catch
        {
            if (attacker is not null)
            {
                await attacker.DisposeAsync();
            }
            await listener.DisposeAsync();
            throw;
        }
    }

    /// <summary>For <c>(RawPeer attacker, PageRangeConnection victim) = attack;</c>.</summary>
    public void Deconstruct(out RawPeer attacker, out PageRangeConnection victim)
    {
        attacker = Attacker;
        victim = Victim;
    }

    /// <summary>
    /// An honest connection on the same listener, which the attack must leave alone: both its ends, owned (and disposed)
    /// by this attack.
    /// </summary>
    public async Task<(PageRangeConnection Client, PageRangeConnection Server)> ConnectNeighbourAsync()
    {
        Task<PageRangeConnection> accepting = Listener.AcceptAsync().AsTask();
        PageRangeConnection client = await PageRangeConnection.ConnectAsync(Name, Options).AsTask().WaitAsync(TestTimeouts.Long);
        _neighbours.Add(client);
        PageRangeConnection server = await accepting.WaitAsync(TestTimeouts.Long);
        _neighbours.Add(server);
        return (client, server);
    }

    /// <summary>
    /// What a hostile test checks once the victim broke off: it noticed, closed both regions' descriptors, unmapped its
    /// region, holds no transaction, and the first neighbour (<see cref="ConnectNeighbourAsync"/>) still carries a oneway.
    /// </summary>
    /// <param name="connected">The descriptors and mappings named after <see cref="RegionName"/> while all were connected.</param>
    public async Task AssertOnlyTheVictimClosedAsync((int Descriptors, int Mappings) connected)
    {
        await Poll.WaitUntilAsync(() => Victim.PeerDied.IsCancellationRequested, "the victim noticed the violation");
        await Poll.WaitUntilAsync(() => FaultResources.Naming(RegionName).Descriptors <= connected.Descriptors - 2, "the victim closed both regions' descriptors");
        await Poll.WaitUntilAsync(() => FaultResources.Naming(RegionName).Mappings < connected.Mappings, "the victim unmapped its region");
        Assert.Equal(0, Victim.LiveIncomingTransactions);
        Assert.True(_neighbours.Count >= 2, "a neighbour to check");
        (PageRangeConnection client, PageRangeConnection server) = (_neighbours[0], _neighbours[1]);
        client.SendOneway(9, [1, 2, 3]);
        using Transaction honest = await server.ReceiveAsync().AsTask().WaitAsync(TestTimeouts.Long);
        Assert.Equal(9u, honest.Code);
        Assert.Equal([1, 2, 3], honest.Payload.ToArray());
    }

    public async ValueTask DisposeAsync()
    {
        // Each part is disposed even if one before it throws: a leaked listener or region would show up in the next
        // test's descriptor counts.
        List<Exception>? errors = null;
        IAsyncDisposable[] parts = [Victim, Attacker, .. Enumerable.Reverse(_neighbours), Listener];
        foreach (IAsyncDisposable part in parts)
        {
            try
            {
                await part.DisposeAsync();
            }
#pragma warning disable CA1031 // Rethrown below, after the other parts are disposed.
            catch (Exception error)
#pragma warning restore CA1031
            {
                (errors ??= []).Add(error);
            }
        }
        if (errors is not null)
        {
            throw new AggregateException(errors);
        }
    }
}
