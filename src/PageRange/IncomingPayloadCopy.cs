namespace PageRange;

/// <summary>When a connection copies incoming payloads out of the shared region before they are read (<see cref="PageRangeOptions.CopyIncomingPayloads"/>).</summary>
public enum IncomingPayloadCopy
{
    /// <summary>Copy when the peer runs as another uid than this process; read in place otherwise.</summary>
    Auto,

    /// <summary>Always copy: every payload is read from private memory the sender cannot change.</summary>
    Always,

    /// <summary>Never copy: payloads are read in place, and the sender could change them while they are read.</summary>
    Never,
}
