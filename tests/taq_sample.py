"""A small synthetic TAQ-style quote file: one exchange's bid or ask per row, the other side 0.

Its moments, for exchanges N, Q and P quoting AAPL (and N quoting MSFT), are written so the
consolidated book is known by hand: ``EXPECTED`` lists, per row of the consolidated stream of AAPL,
(time offset in ms, bid, bid venue, ask, ask venue, locked, crossed), with ``stale_after: 2s``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

T0: Final[int] = 1_723_208_400_000_000_000  # 2024-08-09 13:00:00 UTC (09:00 New York)
MS: Final[int] = 1_000_000
STALE: Final = "2s"

# ms offset, exchange, symbol, bid, bid size, ask, ask size
ROWS: Final = [
    (0, "N", "AAPL", 100.00, 200, 0, 0),
    (100, "Q", "AAPL", 0, 0, 100.03, 300),
    (200, "P", "AAPL", 100.01, 100, 0, 0),
    (300, "N", "AAPL", 0, 0, 100.01, 500),  # locked: P bids 100.01, N offers 100.01
    (400, "Q", "AAPL", 100.02, 400, 0, 0),  # crossed: Q bids 100.02 over N's 100.01
    (500, "N", "MSFT", 400.00, 10, 400.05, 10),  # another symbol, two-sided row
    (600, "Q", "AAPL", 100.00, 400, 0, 0),  # Q backs off: locked again (P 100.01 = N 100.01)
    (700, "N", "AAPL", 0, 0, 100.04, 500),  # N moves its offer up: Q's 100.03 is the best offer
    # nothing from P and Q for AAPL from here; N's offer updates keep coming
    (2_300, "N", "AAPL", 0, 0, 100.05, 500),
    (2_800, "N", "AAPL", 0, 0, 100.06, 500),
]

EXPECTED: Final = [
    (0, 100.00, "N", None, None, False, False),
    (100, 100.00, "N", 100.03, "Q", False, False),
    (200, 100.01, "P", 100.03, "Q", False, False),
    (300, 100.01, "P", 100.01, "N", True, False),
    (400, 100.02, "Q", 100.01, "N", False, True),
    (600, 100.01, "P", 100.01, "N", True, False),
    (700, 100.01, "P", 100.03, "Q", False, False),
    (2_000, 100.01, "P", 100.03, "Q", False, False),  # N's bid of 0 ms ages out; P's bid is better anyway
    (2_100, 100.01, "P", 100.04, "N", False, False),  # Q's offer of 100 ms ages out
    (2_200, 100.00, "Q", 100.04, "N", False, False),  # P's bid of 200 ms ages out: Q's 100.00 of 600 ms
    (2_300, 100.00, "Q", 100.05, "N", False, False),
    (2_600, None, None, 100.05, "N", False, False),  # Q's bid of 600 ms ages out: no bid
    (2_800, None, None, 100.06, "N", False, False),
]


def write_taq(path: Path) -> Path:
    """Write ``ROWS`` as a CSV with the columns ts (ns), exchange, symbol, bid, bid_size, ask, ask_size."""
    lines = ["ts,exchange,symbol,bid,bid_size,ask,ask_size"]
    lines += [f"{T0 + ms * MS},{ex},{sym},{b},{bs},{a},{az}" for ms, ex, sym, b, bs, a, az in ROWS]
    path.write_text("\n".join(lines) + "\n")
    return path
