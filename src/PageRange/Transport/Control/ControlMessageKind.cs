namespace PageRange.Transport;

/// <summary>The first element of every control message. The values are part of the protocol: never reuse one.</summary>
internal enum ControlMessageKind
{
    /// <summary><see cref="HelloMessage"/>: what a side announces, sent with its region's memfd.</summary>
    Hello = 1,

    /// <summary><see cref="RefusalMessage"/>: why a side refuses the connection, sent just before it closes.</summary>
    Refusal = 2,

    /// <summary><see cref="ReadyMessage"/>: the connecting side accepted the listener's hello and region.</summary>
    Ready = 3,

    /// <summary><see cref="CancelMessage"/>: the caller gave up on a call.</summary>
    Cancel = 4,

    /// <summary><see cref="FailedReplyMessage"/>: the callee could not place even an error reply in the caller's region.</summary>
    FailedReply = 5,

    /// <summary><see cref="GoodbyeMessage"/>: a side closes the connection on purpose, with a reason.</summary>
    Goodbye = 6,
}
