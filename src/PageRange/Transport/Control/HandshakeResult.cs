using PageRange.Memory;

namespace PageRange.Transport;

/// <summary>
/// What a completed handshake leaves: the live control socket, the peer's region mapped read-write for this side to
/// write into, the peer's hello and its credentials.
/// </summary>
/// <remarks>
/// Owns <see cref="Control"/> and <see cref="PeerRegion"/>; this side's own region stays with whoever created it.
/// The control socket is not watched yet: the owner calls <see cref="ControlChannel.StartWatching"/> once it is ready
/// to hear about the peer's death.
/// </remarks>
internal sealed class HandshakeResult : IAsyncDisposable
{
    internal HandshakeResult(ControlChannel control, SharedRegion peerRegion, HelloMessage peerHello)
    {
        Control = control;
        PeerRegion = peerRegion;
        PeerHello = peerHello;
        // The backstop watches the peer's process only if the process that handshook is the one the kernel names.
        control.PeerProcess.KeepOnlyIf(peerHello.Pid, control.PeerCredentials);
    }

    /// <summary>The control socket: death watch and rare control messages.</summary>
    public ControlChannel Control { get; }

    /// <summary>The region the peer receives in, opened from its memfd with its announced size, fully writable.</summary>
    public SharedRegion PeerRegion { get; }

    /// <summary>What the peer announced: its region's size and ring capacities.</summary>
    public HelloMessage PeerHello { get; }

    /// <summary>The peer's pid, uid and gid from <c>SO_PEERCRED</c>.</summary>
    public Interop.PeerCredentials PeerCredentials => Control.PeerCredentials;

    /// <summary>Closes the control socket (the peer sees EOF), then unmaps the peer's region.</summary>
    public async ValueTask DisposeAsync()
    {
        await Control.DisposeAsync().ConfigureAwait(false);
        PeerRegion.Dispose();
    }
}
