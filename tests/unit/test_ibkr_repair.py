"""Outage repair for IB ticks: multiset reconciliation at the edges, historical pacing, the params."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mdp.brokers.pacing import HistoricalPacer
from mdp.brokers.params import IbkrParams
from mdp.brokers.repair import NewestSecond, after, reconcile
from mdp.config.registry import builtin_registry
from mdp.errors import ConfigError

# a second's ticks: few distinct (price, size) values, so identical trades in one second are common
second_ticks = st.lists(st.sampled_from([(100.0, 100.0), (100.01, 100.0), (100.0, 200.0)]), max_size=12)


@given(first=second_ticks, middle=st.lists(second_ticks, max_size=4), cut=st.integers(0, 12))
def test_delivered_prefix_plus_reconciled_history_is_the_history(first, middle, cut) -> None:
    """Live delivery cut short inside the outage's first second S: what was delivered plus what the
    repair adds is history's multiset of every second, never a trade more or less."""
    s = 1_000
    history = [(s, key, None) for key in first] + [
        (s + 1 + k, key, None) for k, keys in enumerate(middle) for key in keys
    ]
    delivered = first[: min(cut, len(first))]
    newest = NewestSecond()
    for key in delivered:
        newest.add(s, key)
    added = reconcile(history, s, newest.at(s), s + len(middle))
    assert Counter(t[1] for t in added if t[0] == s) + Counter(delivered) == Counter(first)
    assert [t for t in added if t[0] > s] == [t for t in history if t[0] > s]


def test_two_identical_trades_in_one_second_are_not_merged() -> None:
    """The case a set would get wrong: two identical trades in S, one delivered live."""
    a = (100.0, 100.0)
    history = [(5, a, None), (5, a, None), (6, a, None)]
    assert reconcile(history, 5, Counter([a]), 6) == [(5, a, None), (6, a, None)]


def test_new_session_ticks_up_to_the_repairs_end_are_left_to_history() -> None:
    a = (1.0, 1.0)
    assert after([(9, a, None), (10, a, None), (11, a, None)], 10) == [(11, a, None)]


def test_newest_second_forgets_older_seconds() -> None:
    n = NewestSecond()
    n.add(1, "x")
    n.add(2, "y")
    n.add(2, "y")
    assert n.at(1) == Counter()
    assert n.at(2) == Counter({"y": 2})


async def test_pacer_keeps_five_requests_per_contract_in_two_seconds_and_no_identical_repeat() -> None:
    now = [0.0]
    pacer = HistoricalPacer(clock=lambda: now[0])
    for k in range(5):
        assert pacer.delay("AAPL", ("AAPL", k)) == (0.0, "")
        pacer.sent.append((now[0], "AAPL", ("AAPL", k)))
    wait, why = pacer.delay("AAPL", ("AAPL", 5))
    assert 2.0 <= wait < 2.2
    assert "per contract" in why
    assert pacer.delay("MSFT", ("MSFT", 0)) == (0.0, "")
    now[0] = 3.0
    wait, why = pacer.delay("AAPL", ("AAPL", 0))
    assert 12.0 <= wait < 12.2
    assert "identical" in why


def test_pacer_keeps_sixty_requests_in_ten_minutes() -> None:
    now = [0.0]
    pacer = HistoricalPacer(clock=lambda: now[0])
    for k in range(60):
        pacer.sent.append((k * 3.0, f"C{k}", k))
    now[0] = 180.0
    wait, why = pacer.delay("X", "x")
    assert 420.0 <= wait < 420.2
    assert "10 minutes" in why


def test_params_reject_unknown_keys_and_repeated_symbols() -> None:
    with pytest.raises(ValueError, match="extra"):
        IbkrParams.model_validate({"contracts": [{"symbol": "AAPL", "exchnge": "SMART"}]})
    with pytest.raises(ValueError, match="distinct"):
        IbkrParams.model_validate({"contracts": [{"symbol": "AAPL"}, {"symbol": "AAPL"}]})
    with pytest.raises(ValueError, match="1000"):
        IbkrParams.model_validate({"contracts": [{"symbol": "A"}], "ticks_per_request": 5000})


def test_registry_has_source_ibkr_and_its_seed_alias() -> None:
    registry = builtin_registry()
    for name in ("source.ibkr", "provider.ibkr.stream"):
        entry = registry.get(name)
        assert entry.kind == "source"
        assert entry.params_model is IbkrParams
        assert entry.describe()["params"]["contracts"]["required"] is True


def test_source_params_errors_are_config_errors() -> None:
    from mdp.brokers.ibkr import IbkrSource

    with pytest.raises(ConfigError, match=r"source\.ibkr"):
        IbkrSource(contracts=[])
