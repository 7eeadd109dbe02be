using System.CommandLine;
using PageRange.Transport;

namespace PageRange.Benchmarks.Probe;

/// <summary>
/// What the one-process probes share: their <c>--rounds</c> and <c>--size</c> options, and a connection to a listener of
/// this process (busy-spin by default: in the one-thread probes nothing ever waits, each receive finds its transaction
/// ready, so the strategy only decides that no send takes the parked-reader path; <c>callers-probe</c>, whose threads do
/// wait, chooses its own).
/// </summary>
internal sealed class ProbeSetup : IAsyncDisposable
{
    private readonly PageRangeListener _listener;

    private ProbeSetup(PageRangeListener listener, PageRangeConnection client, PageRangeConnection server)
    {
        _listener = listener;
        Client = client;
        Server = server;
    }

    /// <summary>The connecting side: it sends the calls or the oneways.</summary>
    internal PageRangeConnection Client { get; }

    /// <summary>The accepted side: it receives them.</summary>
    internal PageRangeConnection Server { get; }

    internal static Option<int> RoundsOption() => OptionRules.Positive(new Option<int>("--rounds")
    {
        Description = "Rounds, each reported on its own line (the first ones include the JIT's work).",
        DefaultValueFactory = _ => 6,
        HelpName = "n",
    });

    internal static Option<int> SizeOption(string description) => OptionRules.Positive(new Option<int>("--size")
    {
        Description = description,
        DefaultValueFactory = _ => 64,
        HelpName = "bytes",
    });

    /// <summary>Listens on a name of this process (<paramref name="probe"/> and the process id) and connects to it.</summary>
    /// <param name="probe">The probe's command name.</param>
    /// <param name="wait">How both ends wait (busy-spin unless a probe measures the waits themselves).</param>
    /// <param name="inline">Whether small calls and replies carry their payload inline in the ring (the default).</param>
    internal static async Task<ProbeSetup> ConnectAsync(string probe, WaitStrategy wait = WaitStrategy.BusySpin, bool inline = true)
    {
        string name = $"bench-{probe}-{Environment.ProcessId}";
        var options = new PageRangeOptions { WaitStrategy = wait, InlineSmallPayloads = inline };
        PageRangeListener listener = PageRangeListener.Listen(name, options);
        try
        {
            ValueTask<PageRangeConnection> accept = listener.AcceptAsync();
            PageRangeConnection client = await PageRangeConnection.ConnectAsync(name, options).ConfigureAwait(false);
            try
            {
                return new ProbeSetup(listener, client, await accept.ConfigureAwait(false));
            }
            catch
            {
                await client.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }
        catch
        {
            await listener.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Server.DisposeAsync().ConfigureAwait(false);
        await Client.DisposeAsync().ConfigureAwait(false);
        await _listener.DisposeAsync().ConfigureAwait(false);
    }
}
