using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using PageRange.Memory;
using PageRange.Transport;

namespace PageRange.TestHost;

/// <summary>
/// Scenarios for the control plane's cross-process tests: <c>control-listen &lt;name&gt;</c> and
/// <c>control-connect &lt;name&gt;</c>, each followed by flags:
/// <list type="bullet">
/// <item><c>--uid N</c>: drop privileges to uid and gid N (setgroups, setgid, setuid) before anything else.</item>
/// <item><c>--allow-uid N</c>: add N to <see cref="PageRangeOptions.AllowedUids"/>.</item>
/// <item><c>--version N</c>: announce protocol version N instead of ours.</item>
/// <item><c>--region unsealed|wrong-size</c>: offer a memfd without seals, or one whose size is not the announced one.</item>
/// </list>
/// Once connected the scenario prints <c>connected: &lt;pid&gt; &lt;uid&gt; &lt;gid&gt;</c> (the peer's, from SO_PEERCRED)
/// and answers stdin commands: <c>write &lt;offset&gt; &lt;hex&gt;</c> into the peer's region, <c>read &lt;offset&gt;
/// &lt;length&gt;</c> from its own, <c>wait-died</c> for the peer's death, <c>quit</c>. A refused connection prints
/// <c>refused: &lt;message&gt;</c>; a listener prints <c>handshake-failed: &lt;message&gt;</c> and keeps accepting.
/// </summary>
internal static class ControlScenarios
{
    private static readonly TimeSpan s_bound = TimeSpan.FromSeconds(60);

    public static int Listen(string[] args) => RunAsync(args, listen: true).GetAwaiter().GetResult();

    public static int Connect(string[] args) => RunAsync(args, listen: false).GetAwaiter().GetResult();

    private static async Task<int> RunAsync(string[] args, bool listen)
    {
        string name = args[1];
        var flags = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 2; i + 1 < args.Length; i += 2)
        {
            flags[args[i]] = args[i + 1];
        }
        if (flags.TryGetValue("--uid", out string? uidText))
        {
            DropPrivileges(uint.Parse(uidText, CultureInfo.InvariantCulture));
        }
        var options = new PageRangeOptions { RegionSize = PageRangeOptions.MinRegionSize, TransactionRingCapacity = 64, FreeRingCapacity = 64 };
        if (flags.TryGetValue("--allow-uid", out string? allowed))
        {
            options.AllowedUids.Add(uint.Parse(allowed, CultureInfo.InvariantCulture));
        }
        int version = flags.TryGetValue("--version", out string? versionText)
            ? int.Parse(versionText, CultureInfo.InvariantCulture)
            : ControlHandshake.ProtocolVersion;
        flags.TryGetValue("--region", out string? regionKind);

        // A real receive region (header and rings initialised), so that the public PageRangeConnection on the other side
        // accepts it; the refusal scenarios replace what is offered, not what is kept.
        using InboundChannel inbound = PageRangeConnection.CreateInbound(name, options);
        SharedRegion ownRegion = inbound.Region;
        using SafeMemfdHandle offered = regionKind switch
        {
            null => Interop.Dup(ownRegion.Handle),
            "wrong-size" => Interop.Dup(ownRegion.Handle),
            "unsealed" => CreateUnsealed(options.RegionSize),
            _ => throw new ArgumentException($"unknown region kind '{regionKind}'"),
        };
        long announcedSize = regionKind == "wrong-size" ? options.RegionSize * 2 : options.RegionSize;
        var hello = new HelloMessage(version, Environment.ProcessId, announcedSize, options.TransactionRingCapacity, options.FreeRingCapacity);
        Console.WriteLine($"uid: {Interop.GetEffectiveUserId()}");

        HandshakeResult handshake;
        try
        {
            handshake = listen
                ? await AcceptAsync(name, options, hello, offered)
                : await ControlHandshake.ConnectCoreAsync(name, options, hello, offered, CancellationToken.None);
        }
        catch (ConnectionRefusedException refused)
        {
            Console.WriteLine($"refused: {refused.Message}");
            Console.WriteLine($"refused-by-peer: {refused.RefusedByPeer}");
            return 0;
        }

        await using (handshake)
        {
            Interop.PeerCredentials peer = handshake.PeerCredentials;
            Console.WriteLine($"connected: {peer.Pid} {peer.Uid} {peer.Gid}");
            handshake.Control.StartWatching();
            return await CommandLoopAsync(handshake, ownRegion);
        }
    }

    private static async Task<HandshakeResult> AcceptAsync(string name, PageRangeOptions options, HelloMessage hello, SafeMemfdHandle offered)
    {
        // The listener's own accept loop offers only good regions; the TestHost reaches under it to offer any.
        await using PageRangeListener listener = PageRangeListener.Listen(name, options);
        Console.WriteLine("listening: ok");
        using var timeout = new CancellationTokenSource(s_bound);
        while (true)
        {
            Socket accepted = await listener.AcceptSocketAsync(timeout.Token);
            try
            {
                return await ControlHandshake.AcceptCoreAsync(accepted, name, options, hello, offered, timeout.Token);
            }
            catch (ConnectionRefusedException refused)
            {
                Console.WriteLine($"handshake-failed: {refused.GetType().Name}: {refused.Message}");
            }
        }
    }

    private static async Task<int> CommandLoopAsync(HandshakeResult handshake, SharedRegion ownRegion)
    {
        while (await Console.In.ReadLineAsync() is { } line)
        {
            string[] words = line.Split(' ');
            switch (words[0])
            {
                case "quit":
                    return 0;
                case "write":
                    byte[] bytes = Convert.FromHexString(words[2]);
                    bytes.CopyTo(handshake.PeerRegion.GetSpan(long.Parse(words[1], CultureInfo.InvariantCulture), bytes.Length));
                    Console.WriteLine("written: ok");
                    break;
                case "read":
                    Span<byte> span = ownRegion.GetSpan(
                        long.Parse(words[1], CultureInfo.InvariantCulture), int.Parse(words[2], CultureInfo.InvariantCulture));
                    Console.WriteLine($"bytes: {Convert.ToHexString(span)}");
                    break;
                case "wait-died":
                    await Task.Delay(Timeout.InfiniteTimeSpan, handshake.Control.PeerDied).WaitAsync(s_bound).ContinueWith(static _ => { }, TaskScheduler.Default);
                    Console.WriteLine($"died: {handshake.Control.CloseReason?.GetType().Name}: {handshake.Control.CloseReason?.Message}");
                    break;
                default:
                    Console.Error.WriteLine($"unknown command '{line}'");
                    return 2;
            }
        }
        return 0;
    }

    private static SafeMemfdHandle CreateUnsealed(long size)
    {
        SafeMemfdHandle fd = Interop.MemfdCreate("testhost-unsealed");
        Interop.Ftruncate(fd, size);
        return fd;
    }

    internal static void DropPrivileges(uint id)
    {
        // Order matters: supplementary groups and the gid can only be changed while still root.
        if (NativeMethods.SetGroups(0, 0) != 0 || NativeMethods.SetGid(id) != 0 || NativeMethods.SetUid(id) != 0)
        {
            throw new InvalidOperationException($"Could not drop privileges to uid {id}: errno {Marshal.GetLastPInvokeError()}.");
        }
    }

    private static class NativeMethods
    {
#pragma warning disable SYSLIB1054 // LibraryImport needs AllowUnsafeBlocks, which only the library may set; these are blittable.
        [DllImport("libc", EntryPoint = "setgroups", SetLastError = true)]
        public static extern int SetGroups(nint size, nint list);

        [DllImport("libc", EntryPoint = "setgid", SetLastError = true)]
        public static extern int SetGid(uint gid);

        [DllImport("libc", EntryPoint = "setuid", SetLastError = true)]
        public static extern int SetUid(uint uid);
#pragma warning restore SYSLIB1054
    }
}
