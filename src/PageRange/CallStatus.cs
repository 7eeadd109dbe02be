namespace PageRange;

/// <summary>
/// How a call ended, carried by an error reply (binder's <c>BR_FAILED_REPLY</c> with a status). The codes and their
/// numbers are gRPC's, so a status crosses a gRPC boundary unchanged.
/// </summary>
public enum CallStatus
{
    /// <summary>Not an error.</summary>
    Ok = 0,

    /// <summary>The caller cancelled the call.</summary>
    Cancelled = 1,

    /// <summary>An error with no better code.</summary>
    Unknown = 2,

    /// <summary>The request is invalid, whatever the callee's state.</summary>
    InvalidArgument = 3,

    /// <summary>The call's deadline passed before it completed.</summary>
    DeadlineExceeded = 4,

    /// <summary>Something the request names does not exist.</summary>
    NotFound = 5,

    /// <summary>Something the request would create exists already.</summary>
    AlreadyExists = 6,

    /// <summary>The caller may not do this.</summary>
    PermissionDenied = 7,

    /// <summary>A limit was reached: a quota, a depth limit, room.</summary>
    ResourceExhausted = 8,

    /// <summary>The callee is not in a state that allows the call.</summary>
    FailedPrecondition = 9,

    /// <summary>The call was aborted, typically by a concurrency conflict.</summary>
    Aborted = 10,

    /// <summary>A value is out of its valid range.</summary>
    OutOfRange = 11,

    /// <summary>No handler serves the call's code.</summary>
    Unimplemented = 12,

    /// <summary>The callee failed: an invariant broke or a handler threw.</summary>
    Internal = 13,

    /// <summary>The callee is not available now (shutting down, restarting); the call may be retried.</summary>
    Unavailable = 14,

    /// <summary>Data was lost or corrupted.</summary>
    DataLoss = 15,

    /// <summary>The caller is not authenticated.</summary>
    Unauthenticated = 16,
}
