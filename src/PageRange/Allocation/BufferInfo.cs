namespace PageRange.Allocation;

/// <summary>One live buffer, as the dump shows it (binder's per-buffer line).</summary>
/// <param name="Offset">The first byte, relative to the data area.</param>
/// <param name="Size">The padded size.</param>
/// <param name="State">Reserved, Allocated or Freeing.</param>
/// <param name="Oneway">Charged to the oneway quota.</param>
/// <param name="ClearOnFree">Zeroed when freed.</param>
/// <param name="SenderPid">The process that reserved it.</param>
internal readonly record struct BufferInfo(long Offset, long Size, ExtentState State, bool Oneway, bool ClearOnFree, int SenderPid)
{
    /// <summary>One past the last byte.</summary>
    internal long End => Offset + Size;

    /// <summary>Binder's Rust tree line: <c>buffer: &lt;off&gt; size &lt;n&gt; pid &lt;pid&gt;[ oneway] reserved|allocated</c>.</summary>
    public override string ToString() =>
        $"buffer: {Offset} size {Size} pid {SenderPid}{(Oneway ? " oneway" : "")} {State switch
        {
            ExtentState.Allocated => "allocated",
            ExtentState.Freeing => "freeing",
            _ => "reserved",
        }}{(ClearOnFree ? " clear-on-free" : "")}";
}
