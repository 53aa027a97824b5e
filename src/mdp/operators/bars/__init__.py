"""Bars: every bar kind mdp makes, and the engine behind them.

``operator.py`` (``operator.bars``: time windows, tumbling, sliding, session, calendars), ``threshold.py``
(tick, volume and dollar bars), ``quotes.py`` (quote bars), ``rebar.py`` (bars of bars) and
``processing_time.py`` (wall-clock bars) are the operators. They share the window engine (``engine.py``,
``session.py``), exact aggregation (``aggregate.py``, ``limbs.py``, ``decimals.py``), late-row policies
(``lateness.py``), one quality rule (``quality.py``), per-key progress (``progress.py``) and the rows an
operator holds before preparing them (``pending.py``).
"""

from mdp.operators.bars.operator import BEHIND_ROWS, CLOSE_BATCH_ROWS, BarsOperator, BarsParams, LatePolicy

__all__ = ["BEHIND_ROWS", "CLOSE_BATCH_ROWS", "BarsOperator", "BarsParams", "LatePolicy"]
