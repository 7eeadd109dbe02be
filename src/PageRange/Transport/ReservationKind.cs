namespace PageRange.Transport;

/// <summary>What a reservation will be committed as; fixed when it is reserved.</summary>
internal enum ReservationKind
{
    /// <summary>A oneway message: charged to the peer's oneway quota.</summary>
    Oneway,

    /// <summary>A two-way call.</summary>
    Call,

    /// <summary>The reply to an incoming call.</summary>
    Reply,
}
