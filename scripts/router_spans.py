"""The router's per-stage timing (`tandem_router_span_seconds`) read from two /metrics snapshots.

Used by scripts/sim-fidelity.sh: a span's mean over the requests served between the snapshots.
"""
import re


def spans(path):
    """{span: {"sum": seconds, "count": n}} from one /metrics text file."""
    out = {}
    for line in open(path):
        m = re.match(r'tandem_router_span_seconds_(sum|count)\{span="(\w+)"\} (\S+)', line)
        if m:
            out.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    return out


def mean_span_ms(start, end, name):
    """Mean `name` span in ms between two spans() results; None when no request ended it."""
    a, b = start.get(name, {}), end.get(name, {})
    n = b.get("count", 0) - a.get("count", 0)
    return 1e3 * (b.get("sum", 0) - a.get("sum", 0)) / n if n > 0 else None
