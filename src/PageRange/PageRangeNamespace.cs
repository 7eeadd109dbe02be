namespace PageRange;

/// <summary>Where a listener's name lives: see <see cref="PageRangeOptions.Namespace"/>.</summary>
public enum PageRangeNamespace
{
    /// <summary>
    /// The abstract Unix socket namespace (<c>\0pagerange/NAME</c>): no file, nothing left behind by a crash. Abstract
    /// names are per network namespace and any process in it, of any uid, can bind a free one first or connect to it.
    /// </summary>
    Abstract = 0,

    /// <summary>
    /// A socket file in a directory only this uid can enter: <c>$XDG_RUNTIME_DIR/pagerange/NAME</c>, or
    /// <c>/tmp/pagerange-UID/NAME</c> without a runtime directory (mode 0700, created if missing, its owner checked).
    /// Another user can neither take the name nor reach the socket; only processes of the same uid (and root) can connect.
    /// </summary>
    Private = 1,
}
