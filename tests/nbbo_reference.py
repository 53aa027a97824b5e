"""A plain-Python consolidated best bid and offer, written from docs/operators.md, to check ``operator.nbbo``.

Row by row, in ``(ts_event, seq, arrival)`` order, with a dict of the last bid and ask of each
(symbol, venue): no polars, no vectorisation, so it shares no code (and no shortcut) with the operator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Row = Mapping[str, Any]
#: what one output quote is compared on
Out = tuple[str, int, float | None, float | None, float | None, float | None, str | None, str | None, bool, bool]


def _present(price: object) -> bool:
    return isinstance(price, int | float) and price > 0 and price != float("inf")


def reference_nbbo(rows: Iterable[Row], stale: int | None = None) -> list[Out]:
    """The quotes ``operator.nbbo`` should emit for ``rows`` (dicts with symbol, venue, ts_event, seq,
    bid, bid_size, ask, ask_size), in its order."""
    ordered = sorted(enumerate(rows), key=lambda ir: (ir[1]["ts_event"], ir[1]["seq"], ir[0]))
    # (symbol, venue, side) -> (price, size, ts of the update)
    state: dict[tuple[str, str, str], tuple[float, float | None, int]] = {}
    expired: set[tuple[tuple[str, str, str], int]] = set()
    out: list[Out] = []

    def best(symbol: str, now: int, side: str) -> tuple[float | None, float | None, str | None]:
        found: tuple[float, int, str, float | None] | None = None
        for (sym, venue, s), (price, size, ts) in sorted(state.items()):
            if sym != symbol or s != side or not (ts <= now and (stale is None or now < ts + stale)):
                continue
            if found is None:
                found = (price, ts, venue, size)
                continue
            better = price > found[0] if side == "bid" else price < found[0]
            if better or (price == found[0] and ts < found[1]):
                found = (price, ts, venue, size)
        return (None, None, None) if found is None else (found[0], found[3], found[2])

    def emit(symbol: str, now: int) -> None:
        bid, bid_size, bid_venue = best(symbol, now, "bid")
        ask, ask_size, ask_venue = best(symbol, now, "ask")
        both = bid is not None and ask is not None
        locked = both and bid == ask
        crossed = both and bid > ask  # type: ignore[operator]
        out.append((symbol, now, bid, bid_size, ask, ask_size, bid_venue, ask_venue, locked, crossed))

    def age_out(upto: int, updated_now: set[tuple[str, str, str]]) -> None:
        """Expiry events at every x <= upto (x == upto only for sides no row at upto updates)."""
        if stale is None:
            return
        due: dict[tuple[int, str], None] = {}
        for key, (_, _, ts) in state.items():
            x = ts + stale
            if (key, x) in expired:
                continue
            if x < upto or (x == upto and key not in updated_now):
                due[(x, key[0])] = None
                expired.add((key, x))
        for x, symbol in sorted(due):
            emit(symbol, x)

    i = 0
    while i < len(ordered):
        t = ordered[i][1]["ts_event"]
        group = []
        while i < len(ordered) and ordered[i][1]["ts_event"] == t:
            group.append(ordered[i][1])
            i += 1
        updated = {(r["symbol"], r["venue"], s) for r in group for s in ("bid", "ask") if _present(r[s])}
        age_out(t, updated)
        for r in group:
            if not (_present(r["bid"]) or _present(r["ask"])):
                continue  # a row with neither side changes nothing, but event time has reached it
            for side in ("bid", "ask"):
                if _present(r[side]):
                    state[(r["symbol"], r["venue"], side)] = (float(r[side]), r[f"{side}_size"], t)
            emit(r["symbol"], t)
    return out
