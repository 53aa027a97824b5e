"""Parquet specifics: the folder layout, whole files only, and idempotency applied when reading."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from mdp.errors import ConfigError, PermanentStoreError, TransientStoreError
from mdp.runtime.checkpoints import Checkpoint
from mdp.stores import ParquetStore
from mdp.stores.base import ReadFilter
from mdp.stores.samples import sample_bars, sample_trades

DAY = 86_400 * 1_000_000_000


def checkpoint(job: str, epoch: int) -> Checkpoint:
    return Checkpoint(job=job, epoch=epoch, graph="{}", inputs="{}", watermark=epoch, rows=4, state=b"")


def test_files_land_under_kind_date_and_symbol_folders(tmp_path: Path) -> None:
    trades = sample_trades(4).with_columns(pl.Series("symbol", ["BTC/USDT", "BTC/USDT", "ETH", "ETH"]))
    trades = trades.with_columns(pl.Series("ts_event", [0, 1, DAY + 5, 19_945 * DAY]))
    with ParquetStore(tmp_path) as store:
        store.write("trade", trades)
    found = sorted(str(p.relative_to(tmp_path).parent) for p in tmp_path.rglob("*.parquet"))
    assert found == [
        "kind=trade/date=1970-01-01/symbol=BTC%2FUSDT",
        "kind=trade/date=1970-01-02/symbol=ETH",
        "kind=trade/date=2024-08-10/symbol=ETH",
    ]
    assert all(p.name.startswith("part-") for p in tmp_path.rglob("*.parquet"))
    assert pl.read_parquet(next(tmp_path.rglob("symbol=BTC%2FUSDT/*.parquet"))).get_column("symbol")[0] == "BTC/USDT"


def test_without_symbol_folders_a_batch_writes_one_file_per_date(tmp_path: Path) -> None:
    trades = sample_trades(4).with_columns(pl.Series("symbol", ["BTC/USDT", "ETH", "ETH", "SOL"]))
    trades = trades.with_columns(pl.Series("ts_event", [0, 1, DAY + 5, DAY + 6]))
    with ParquetStore(tmp_path, symbol_folders=False) as store:
        store.write("trade", trades)
        store.write("trade", trades)  # written twice: still one row per key when read
        found = sorted(str(p.relative_to(tmp_path).parent) for p in tmp_path.rglob("*.parquet"))
        assert found == ["kind=trade/date=1970-01-01"] * 2 + ["kind=trade/date=1970-01-02"] * 2
        assert store.read("trade").sort("ts_event").equals(trades.sort("ts_event"))
        assert store.read("trade", symbol="ETH").get_column("ts_event").sort().to_list() == [1, DAY + 5]
    with ParquetStore(tmp_path) as by_symbol:  # both layouts under one root are read together
        by_symbol.write("trade", trades.head(1).with_columns(pl.lit(7).alias("ts_event")))
        assert by_symbol.read("trade").height == 5


def test_readers_see_no_file_until_it_is_complete(tmp_path: Path) -> None:
    with ParquetStore(tmp_path) as store:
        seen: list[list[str]] = []
        store.on_write_staged = lambda: seen.append(sorted(p.name for p in tmp_path.rglob("*parquet*")))
        store.write("trade", sample_trades(2))
        (staged,) = seen[0]
        assert staged.startswith(".part-")
        assert staged.endswith(".parquet.tmp")
        assert store.read("trade").height == 2
        assert not list(tmp_path.rglob("*.tmp"))


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    with ParquetStore(tmp_path) as store:

        def fail() -> None:
            raise OSError("device gone")

        store.on_write_staged = fail
        with pytest.raises(TransientStoreError, match="device gone"):
            store.write("trade", sample_trades(4))
        assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_replayed_capture_does_not_double_rows(tmp_path: Path) -> None:
    with ParquetStore(tmp_path) as store:
        for _ in range(3):
            store.write("trade", sample_trades(10))
        assert len(list(tmp_path.rglob("part-*.parquet"))) == 6  # 2 symbols x 3 writes
        assert store.read("trade").equals(sample_trades(10).sort("symbol", "ts_event", "seq"))


def test_a_later_file_with_a_higher_revision_wins_and_an_equal_one_does_not(tmp_path: Path) -> None:
    with ParquetStore(tmp_path) as store:
        store.write("bar", sample_bars(4, revision=1, close=1.0))
        store.write("bar", sample_bars(4, revision=1, close=2.0))
        store.write("bar", sample_bars(2, revision=3, close=3.0))
        found = store.read("bar")
    expected = pl.concat([sample_bars(4, revision=3, close=3.0)[:2], sample_bars(4, revision=1, close=1.0)[2:]])
    assert found.equals(expected.sort("symbol", "timeframe", "start"))


def test_date_folders_outside_the_range_are_not_read(tmp_path: Path) -> None:
    with ParquetStore(tmp_path) as store:
        store.write("trade", sample_trades(4, origin=0))
        store.write("trade", sample_trades(4, origin=3 * DAY))
        assert store.read("trade", start=2 * DAY).height == 4
        assert len(store._files(ReadFilter("trade", start=2 * DAY, end=4 * DAY))) == 2
        assert len(store._files(ReadFilter("trade", end=1))) == 2
        assert store._files(ReadFilter("trade", symbol="AAA", start=DAY, end=2 * DAY)) == []


def test_a_table_is_one_folder_name(tmp_path: Path) -> None:
    assert ParquetStore(tmp_path, tables={"bar": "bars_1m"}).tables == {"bar": "bars_1m"}
    for bad in ("../up", "a/b", ".."):
        with pytest.raises(ConfigError):
            ParquetStore(tmp_path, tables={"bar": bad})


def test_a_foreign_folder_under_a_kind_is_a_permanent_error(tmp_path: Path) -> None:
    (tmp_path / "kind=trade" / "date=yesterday").mkdir(parents=True)
    with ParquetStore(tmp_path) as store, pytest.raises(PermanentStoreError, match="date=YYYY-MM-DD"):
        store.read("trade")


def test_a_read_only_store_over_a_missing_folder_reads_nothing(tmp_path: Path) -> None:
    with ParquetStore(tmp_path / "none", read_only=True) as store:
        assert store.read("bar").height == 0
    assert not (tmp_path / "none").exists()


def test_a_new_checkpointed_run_deletes_its_jobs_uncommitted_parts_and_no_others(tmp_path: Path) -> None:
    """A run that died between writing an epoch's parts and its checkpoint left them behind (never read);
    the job's next run deletes them, with a temporary a killed write left, and touches no other job's."""

    with ParquetStore(tmp_path) as store:
        store.hold_for_checkpoints("job-a")
        store.write("bar", sample_bars(4), checkpoint("job-a", 1))  # committed: stays
        store.write("bar", sample_bars(4, origin=DAY))  # the epoch that never committed
    with ParquetStore(tmp_path) as other:
        other.hold_for_checkpoints("job.b")
        other.write("bar", sample_bars(4, origin=2 * DAY))  # another job's epoch under way: stays
    parts = sorted(tmp_path.rglob("*.ckpt.parquet"))
    assert len(parts) == 3 * 2  # 3 batches x 2 symbols
    dead = [p for p in parts if "date=1970-01-02" in str(p)]
    killed = dead[0].with_name(f".{dead[0].name}.tmp")
    killed.write_bytes(b"half a file")
    with ParquetStore(tmp_path) as again:
        assert again.read("bar").height == 4  # the dead epoch was never read
        again.hold_for_checkpoints("job-a")
        left = sorted(tmp_path.rglob("*.ckpt.parquet*"))
        assert left == [p for p in parts if p not in dead]
        assert again.read("bar").height == 4


def test_dead_files_lists_every_jobs_uncommitted_parts_and_cut_temporaries(tmp_path: Path) -> None:
    with ParquetStore(tmp_path, symbol_folders=False) as store:
        store.hold_for_checkpoints("a")
        store.write("bar", sample_bars(2))
        part = next(tmp_path.rglob("*.ckpt.parquet"))
        cut = part.with_name(".part-00000000000000000001-ab.parquet.tmp")
        cut.write_bytes(b"")
        assert sorted(store.dead_files()) == sorted([part, cut])
        assert store.dead_files("b") == []


def test_a_long_checkpointed_history_keeps_one_manifest_and_a_restart_walks_no_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job committing every 5 s for months must not make every read and restart slower: each commit
    replaces the manifest (it carries the high-water mark of all before it), and the next run finds the parts
    of its dead epoch in the folders the job's pending list names instead of walking the table."""
    with ParquetStore(tmp_path, symbol_folders=False) as store:
        store.hold_for_checkpoints("live")
        for epoch in range(1, 41):
            store.write("bar", sample_bars(2, origin=epoch * 60 * 10**9), checkpoint("live", epoch))
        store.write("bar", sample_bars(2, origin=DAY))  # the epoch a kill cut short
    folder = tmp_path / "_checkpoints" / "live"
    assert sorted(p.name.split("-")[0] for p in folder.iterdir()) == ["epoch", "pending"]
    dead = sorted(tmp_path.rglob("date=1970-01-02/*.ckpt.parquet"))
    assert len(dead) == 1
    assert (folder / "pending").read_text().split() == [str(dead[0].parent.relative_to(tmp_path))]

    def no_walk(*_: object) -> None:
        raise AssertionError("a restart walked the table")

    monkeypatch.setattr(Path, "rglob", no_walk)
    with ParquetStore(tmp_path, symbol_folders=False) as again:
        assert again.read("bar").height == 80  # 40 commits x 2 bars; not the dead epoch's
        again.hold_for_checkpoints("live")
        assert not dead[0].exists()
        resumed = again.load_checkpoint("live")
        assert resumed is not None
        assert resumed.epoch == 40
        again.write("bar", sample_bars(2, origin=2 * DAY), checkpoint("live", 41))
        assert again.read("bar").height == 82
    assert (folder / "pending").read_text() == ""


def test_parts_named_after_a_clock_step_back_stay_unread_until_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A part counts as committed when its ``<ns>`` is at most its job's high-water mark, so a run whose wall
    clock went back (a host moved, a bad NTP step) still names its parts after every committed one."""
    with ParquetStore(tmp_path, symbol_folders=False) as store:
        store.hold_for_checkpoints("j")
        store.write("bar", sample_bars(2), checkpoint("j", 1))
    import mdp.stores.parquet as parquet

    monkeypatch.setattr(parquet.time, "time_ns", lambda: 1_000)
    with ParquetStore(tmp_path, symbol_folders=False) as again:
        again.hold_for_checkpoints("j")
        again.write("bar", sample_bars(2, origin=DAY))
        assert again.read("bar").height == 2  # written, not committed
        again.write("bar", pl.DataFrame(), checkpoint("j", 2))
        assert again.read("bar").height == 4


def test_a_store_from_before_the_high_water_mark_reads_and_resumes_as_it_did(tmp_path: Path) -> None:
    """Manifests that only name their parts (no ``high_water``), no list of pending parts: the committed
    parts stay visible, a dead epoch is found by walking the job's parts once, and the next commit carries on."""
    import json

    with ParquetStore(tmp_path, symbol_folders=False) as store:
        store.hold_for_checkpoints("old")
        store.write("bar", sample_bars(2), checkpoint("old", 1))
        store.write("bar", sample_bars(2, origin=60 * 10**9), checkpoint("old", 2))
        store.write("bar", sample_bars(2, origin=DAY))  # dead
    folder = tmp_path / "_checkpoints" / "old"
    (folder / "pending").unlink()
    first = sorted(tmp_path.rglob("*.ckpt.parquet"))[0]
    for manifest in folder.glob("epoch-*.json"):  # as the old code wrote them: one per commit, no mark
        doc = json.loads(manifest.read_bytes())
        del doc["high_water"]
        manifest.write_text(json.dumps(doc))
        older = dict(doc, epoch=1, files=[str(first.relative_to(tmp_path))])
        (folder / "epoch-000000000001-00000000000000000001.json").write_text(json.dumps(older))
    with ParquetStore(tmp_path, symbol_folders=False) as again:
        assert again.read("bar").height == 4
        assert len(again.dead_files("old")) == 1
        again.hold_for_checkpoints("old")
        assert again.dead_files("old") == []
        again.write("bar", sample_bars(2, origin=2 * DAY), checkpoint("old", 3))
        assert again.read("bar").height == 6
        assert [p.name.split("-")[1] for p in folder.glob("epoch-*.json")] == ["000000000003"]


def test_a_jobs_first_run_deletes_parts_a_run_left_before_its_first_commit_with_no_list(tmp_path: Path) -> None:
    """Code before the pending list left a dead run's parts and no ``_checkpoints/<job>`` folder at all; the
    job's next first commit would otherwise raise its mark above them and make them read."""
    import shutil

    with ParquetStore(tmp_path, symbol_folders=False) as store:
        store.hold_for_checkpoints("first")
        store.write("bar", sample_bars(2, close=9.0))  # died before its first commit
    shutil.rmtree(tmp_path / "_checkpoints")
    with ParquetStore(tmp_path, symbol_folders=False) as again:
        again.hold_for_checkpoints("first")
        assert list(tmp_path.rglob("*.ckpt.parquet")) == []
        again.write("bar", sample_bars(2), checkpoint("first", 1))
        assert again.read("bar").get_column("close").to_list() == [1.5, 2.5]
