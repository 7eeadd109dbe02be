namespace PageRange.Allocation;

/// <summary>What <see cref="BufferAllocator.Free(long, ulong)"/> did with a free the receiver published.</summary>
internal enum FreeResult
{
    /// <summary>The buffer was live and delivered: it was given back.</summary>
    Freed,

    /// <summary>No delivered buffer starts there (unknown, never committed, already freed or being freed): ignored.</summary>
    Ignored,

    /// <summary>The buffer's record is still on the transaction ring, so the receiver cannot have read it: ignored, as binder does.</summary>
    Undelivered,
}
