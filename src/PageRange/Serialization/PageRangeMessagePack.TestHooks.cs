namespace PageRange.Serialization;

/// <summary>Read-only views for tests; nothing here is used by the library itself.</summary>
public static partial class PageRangeMessagePack
{
    /// <summary>The capacity of the parcel this thread keeps for its next copied message; 0 if it keeps none.</summary>
    internal static int ParcelCapacityForTest => t_parcel?.Capacity ?? 0;
}
