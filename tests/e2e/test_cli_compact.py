"""``mdp compact`` in a subprocess: a Parquet store's finished days merged into one file per folder, the
bars read back the same; a store that is not Parquet is refused with what to write instead."""

from __future__ import annotations

from pathlib import Path

from polars.testing import assert_frame_equal

from mdp.stores import ParquetStore
from mdp.stores.samples import sample_bars
from tests.e2e.test_cli import mdp

DAY = 86_400 * 1_000_000_000
MINUTE = 60 * 10**9


def test_compact_merges_the_finished_days_and_the_bars_read_the_same(tmp_path: Path) -> None:
    root = tmp_path / "capture"
    with ParquetStore(root, tables={"bar": "bars_1m"}) as store:
        for minute in range(5):  # a live job: one part per symbol per close, over two days
            store.write("bar", sample_bars(2, origin=minute * MINUTE, quality="provisional"))
            store.write("bar", sample_bars(2, origin=minute * MINUTE, revision=1))
            store.write("bar", sample_bars(2, origin=DAY + minute * MINUTE))
        before = store.read("bar")
    result = mdp(
        "compact", "--store", f"parquet:{root}", "--table", "bars_1m", "--before", "1970-01-02T00:00:00Z", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"merged 20 parts in 2 folders into one file each (10 rows) under parquet:{root / 'bars_1m'}; "
        "0 folders left for later (an epoch not committed, or two layouts)\n"
    )
    first_day = sorted((root / "bars_1m" / "date=1970-01-01").rglob("part-*.parquet"))
    assert [p.parent.name for p in first_day] == ["symbol=AAA", "symbol=BBB"]
    assert len(list((root / "bars_1m" / "date=1970-01-02").rglob("part-*.parquet"))) == 10  # not finished
    with ParquetStore(root, tables={"bar": "bars_1m"}, read_only=True) as store:
        assert_frame_equal(store.read("bar"), before)


def test_compact_refuses_a_store_that_is_not_parquet_or_a_table_it_does_not_hold(tmp_path: Path) -> None:
    result = mdp("compact", "--store", "sqlite:bars.sqlite", cwd=tmp_path)
    assert result.returncode == 2
    assert "compaction merges the parts of a Parquet store, parquet:DIR; got 'sqlite:bars.sqlite'" in result.stderr
    result = mdp("compact", "--store", "parquet:nowhere", cwd=tmp_path)
    assert result.returncode == 2
    assert "nowhere is not a folder" in result.stderr
    (tmp_path / "capture" / "bars_1m").mkdir(parents=True)
    result = mdp("compact", "--store", "parquet:capture", cwd=tmp_path)  # the default folder is kind=bar
    assert result.returncode == 2
    assert "--table: capture holds no folder 'kind=bar'; it holds ['bars_1m']" in result.stderr
    result = mdp("compact", "--store", "parquet:capture", "--kind", "bars", cwd=tmp_path)
    assert result.returncode == 2
    assert "--kind: a store keeps the kinds ['trade', 'quote', 'bar', 'quote_bar'], got 'bars'" in result.stderr
