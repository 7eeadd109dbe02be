using System.Numerics;
using PageRange.Memory;

namespace PageRange.Hosting;

/// <summary>The rules <see cref="PageRangeOptions"/>' setters enforce, as messages that name the setting and its value.</summary>
internal readonly struct SettingsCheck(string prefix, List<string> errors)
{
    public void Range(string name, int? value, int min, int max)
    {
        if (value is { } v && (v < min || v > max))
        {
            errors.Add($"{prefix}{name} ({v}) must be between {min} and {max}.");
        }
    }

    public void Range(string name, TimeSpan? value, TimeSpan min, TimeSpan max)
    {
        if (value is { } v && (v < min || v > max))
        {
            errors.Add($"{prefix}{name} ({v}) must be between {min} and {max}.");
        }
    }

    public void Range(string name, double? value, double min, double max)
    {
        if (value is { } v && (double.IsNaN(v) || v < min || v > max))
        {
            errors.Add($"{prefix}{name} ({v}) must be between {min} and {max}.");
        }
    }

    public void Timeout(string name, TimeSpan? value, bool allowZero)
    {
        if (value is not { } v || v == System.Threading.Timeout.InfiniteTimeSpan)
        {
            return;
        }
        if (v < TimeSpan.Zero || (!allowZero && v == TimeSpan.Zero))
        {
            errors.Add($"{prefix}{name} ({v}) must be {(allowZero ? "zero or more" : "positive")}, or infinite ({System.Threading.Timeout.InfiniteTimeSpan}).");
        }
    }

    public void RegionSize(string name, long? value)
    {
        if (value is not { } v)
        {
            return;
        }
        if (v < PageRangeOptions.MinRegionSize || v > PageRangeOptions.MaxRegionSize)
        {
            errors.Add($"{prefix}{name} ({v}) must be between {PageRangeOptions.MinRegionSize} and {PageRangeOptions.MaxRegionSize} bytes.");
        }
        else if (v % SharedRegion.PageSize != 0)
        {
            errors.Add($"{prefix}{name} ({v}) must be a multiple of the page size ({SharedRegion.PageSize}).");
        }
    }

    public void RingCapacity(string name, int? value)
    {
        if (value is not { } v)
        {
            return;
        }
        if (v < PageRangeOptions.MinRingCapacity || v > PageRangeOptions.MaxRingCapacity || !BitOperations.IsPow2(v))
        {
            errors.Add($"{prefix}{name} ({v}) must be a power of two between {PageRangeOptions.MinRingCapacity} and {PageRangeOptions.MaxRingCapacity}.");
        }
    }

    public void Defined<TEnum>(string name, TEnum? value)
        where TEnum : struct, Enum
    {
        if (value is { } v && !Enum.IsDefined(v))
        {
            errors.Add($"{prefix}{name} ({v}) must be one of {string.Join(", ", Enum.GetNames<TEnum>())}.");
        }
    }
}
