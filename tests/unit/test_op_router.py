"""Router: rows to named ports by value, value list or predicate; unmatched rows never vanish."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.errors import ConfigError, DagValidationError, NodeError
from mdp.operators.market.router import Router, RouterParams
from mdp.records import END_OF_TIME, Watermark
from mdp.runtime.graph import Dag, Node
from mdp.runtime.runtime import RunStats
from mdp.testing import ListSink, ListSource, run_graph

FRAME = pl.DataFrame(
    {
        "venue": ["binance-spot", "binance-usdm", "kraken", "binance-spot", None],
        "symbol": ["BTCUSDT", "BTCUSDT", "XBTUSD", "ETHUSDT", "ETHUSDT"],
        "price": [60_000.0, 60_010.0, 59_990.0, 2_500.0, 2_501.0],
        "size": [0.1, 2.0, 0.5, 10.0, 1.0],
    }
)


async def route(router: Router, items: list[Any]) -> tuple[dict[str, ListSink], RunStats]:
    sinks = {port: ListSink() for port in router.outputs}
    dag = Dag().add_node(Node("src", ListSource(items))).add_node(Node("route", router)).add_edge("src", "route")
    for port, sink in sinks.items():
        dag.add_node(Node(f"sink_{port}", sink)).add_edge("route", f"sink_{port}", port=port)
    return sinks, await run_graph(dag)


def column(sink: ListSink, name: str) -> list[Any]:
    return sink.frame[name].to_list() if sink.items else []


async def test_rows_go_to_the_port_named_by_their_value() -> None:
    router = Router(column="symbol", values=["BTCUSDT", "ETHUSDT"])
    assert router.outputs == ("BTCUSDT", "ETHUSDT", "default")
    sinks, stats = await route(router, [FRAME])
    assert column(sinks["BTCUSDT"], "price") == [60_000.0, 60_010.0]
    assert column(sinks["ETHUSDT"], "price") == [2_500.0, 2_501.0]
    assert column(sinks["default"], "symbol") == ["XBTUSD"]
    assert stats.nodes["route"].counters == {
        "routed.BTCUSDT": 2,
        "routed.ETHUSDT": 2,
        "routed.default": 1,
        "unmatched": 1,
    }


async def test_value_lists_route_several_values_to_one_port_and_nulls_are_unmatched() -> None:
    router = Router(column="venue", routes={"spot": ["binance-spot"], "futures": ["binance-usdm", "binance-coinm"]})
    sinks, _ = await route(router, [FRAME])
    assert column(sinks["spot"], "symbol") == ["BTCUSDT", "ETHUSDT"]
    assert column(sinks["futures"], "symbol") == ["BTCUSDT"]
    assert column(sinks["default"], "venue") == ["kraken", None]


async def test_predicates_take_the_first_match_in_order() -> None:
    router = Router(predicates={"block": "price * size >= 100000", "eth": pl.col("symbol") == "ETHUSDT"})
    sinks, _ = await route(router, [FRAME])
    assert column(sinks["block"], "price") == [60_010.0]
    assert column(sinks["eth"], "price") == [2_500.0, 2_501.0]
    assert column(sinks["default"], "price") == [60_000.0, 59_990.0]


async def test_match_all_sends_a_row_to_every_matching_port() -> None:
    router = Router(predicates={"btc": "symbol = 'BTCUSDT'", "big": "size >= 1"}, match="all")
    sinks, _ = await route(router, [FRAME])
    assert column(sinks["btc"], "size") == [0.1, 2.0]
    assert column(sinks["big"], "size") == [2.0, 10.0, 1.0]
    assert column(sinks["default"], "size") == [0.5]


async def test_an_unmatched_row_raises_when_unmatched_is_error() -> None:
    router = Router(column="venue", values=["binance-spot", "binance-usdm"], unmatched="error")
    assert router.outputs == ("binance-spot", "binance-usdm")
    with pytest.raises(NodeError, match=r"match no route, e\.g\. .*kraken"):
        await route(router, [FRAME])


async def test_watermarks_reach_every_port() -> None:
    sinks, _ = await route(Router(column="symbol", values=["BTCUSDT"]), [FRAME, Watermark(7)])
    assert all(sink.watermarks == [7, END_OF_TIME] for sink in sinks.values())


async def test_an_edge_from_an_undeclared_port_fails_validation() -> None:
    dag = Dag().add_node(Node("src", ListSource([]))).add_node(Node("route", Router(column="symbol", values=["A"])))
    dag.add_node(Node("sink", ListSink())).add_edge("src", "route").add_edge("route", "sink", port="B")
    with pytest.raises(DagValidationError, match="no output port 'B'"):
        await run_graph(dag)


async def test_a_port_without_an_edge_fails_at_open() -> None:
    dag = (
        Dag().add_node(Node("src", ListSource([FRAME]))).add_node(Node("route", Router(column="symbol", values=["A"])))
    )
    dag.add_node(Node("sink", ListSink())).add_edge("src", "route").add_edge("route", "sink", port="A")
    with pytest.raises(NodeError, match=r"ports \['default'\] have no edge"):
        await run_graph(dag)


def test_params_need_exactly_one_rule_and_distinct_ports() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        RouterParams.model_validate({"column": "x"})
    with pytest.raises(ValueError, match="needs column"):
        RouterParams.model_validate({"values": ["a"]})
    with pytest.raises(ValueError, match="extra"):
        RouterParams.model_validate({"column": "x", "values": ["a"], "fallback": "y"})
    with pytest.raises(ConfigError, match="distinct names"):
        Router(column="x", routes={"default": ["a"]})
    op = Router.from_params(RouterParams.model_validate({"predicates": {"big": "size > 1"}, "unmatched": "error"}))
    assert op.outputs == ("big",)


async def test_integer_columns_route_by_value() -> None:
    frame = pl.DataFrame({"shard": [0, 1, 2, 1], "x": [1, 2, 3, 4]})
    sinks, _ = await route(Router(column="shard", routes={"even": [0, 2], "odd": [1]}), [frame])
    assert column(sinks["even"], "x") == [1, 3]
    assert column(sinks["odd"], "x") == [2, 4]


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.sampled_from(["a", "b", "c", "d", None]), min_size=1, max_size=60))
def test_every_row_goes_to_exactly_one_port_with_match_first(values: list[str | None]) -> None:
    import asyncio

    frame = pl.DataFrame({"k": values, "i": list(range(len(values)))}, schema={"k": pl.String, "i": pl.Int64})
    sinks, _ = asyncio.run(route(Router(column="k", routes={"ab": ["a", "b"], "c": ["c"]}), [frame]))
    seen = sorted(i for sink in sinks.values() for i in column(sink, "i"))
    assert seen == list(range(len(values)))
    assert all(v in ("a", "b") for v in column(sinks["ab"], "k"))
