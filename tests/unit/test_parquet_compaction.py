"""``ParquetStore.compact``: a day's parts merged into one file per folder, and reads the same before,
during and after; parts of epochs not yet committed, and days written in both layouts, left alone."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mdp.errors import PermanentStoreError
from mdp.runtime.checkpoints import Checkpoint
from mdp.stores import ParquetStore
from mdp.stores.samples import sample_bars

DAY = 86_400 * 1_000_000_000
KEYS = ["symbol", "timeframe", "start"]


def checkpoint(job: str, epoch: int) -> Checkpoint:
    return Checkpoint(job=job, epoch=epoch, graph="{}", inputs="{}", watermark=epoch, rows=1, state=b"")


def parts(root: Path) -> list[Path]:
    return sorted(root.rglob("part-*.parquet"))


#: one write: (day, first minute, bars, revision, provisional, close)
writes = st.lists(
    st.tuples(
        st.integers(0, 2),
        st.integers(0, 3),
        st.integers(1, 8),
        st.integers(0, 2),
        st.booleans(),
        st.sampled_from([1.0, 2.0, 3.0]),
    ),
    min_size=1,
    max_size=12,
)


def bars_of(day: int, minute: int, n: int, revision: int, provisional: bool, close: float) -> pl.DataFrame:
    quality = "provisional" if provisional else "complete"
    return sample_bars(n, origin=day * DAY + minute * 60 * 10**9, revision=revision, close=close, quality=quality)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=writes, later=writes, symbol_folders=st.booleans(), held=st.booleans())
def test_reads_are_the_same_after_compaction_and_after_the_writes_that_follow_it(
    tmp_path_factory: pytest.TempPathFactory,
    writes: list[tuple[int, int, int, int, bool, float]],
    later: list[tuple[int, int, int, int, bool, float]],
    symbol_folders: bool,
    held: bool,
) -> None:
    """Overlapping writes of revisions, provisional and final bars, in a checkpointed job or not: the store's
    rule picks the same row per key from one merged file as from the parts, and rows written after the
    compaction win or lose against the merged file as they would have against the parts (a twin store
    that is never compacted gets the same writes)."""
    roots = [tmp_path_factory.mktemp("compacted"), tmp_path_factory.mktemp("twin")]
    stores = [ParquetStore(root, symbol_folders=symbol_folders) for root in roots]
    for store in stores:
        store.open()
        if held:
            store.hold_for_checkpoints("job")
    epoch = 0

    def write_all(batch: list[tuple[int, int, int, int, bool, float]]) -> None:
        nonlocal epoch
        for spec in batch:
            epoch += 1
            for store in stores:
                store.write("bar", bars_of(*spec), checkpoint("job", epoch) if held else None)

    try:
        write_all(writes)
        before = stores[0].read("bar").sort(KEYS)
        per_folder = [len(list(f.glob("part-*.parquet"))) for f in {p.parent for p in parts(roots[0])}]
        done = stores[0].compact("bar", before=3 * DAY)
        assert stores[0].read("bar").sort(KEYS).equals(before)
        assert len(parts(roots[0])) == len({p.parent for p in parts(roots[0])})  # one file per folder
        assert done.parts == sum(n for n in per_folder if n > 1)  # a folder of one part is left as it is
        assert done.folders == sum(1 for n in per_folder if n > 1)
        assert done.skipped == 0
        write_all(later)
        assert stores[0].read("bar").sort(KEYS).equals(stores[1].read("bar").sort(KEYS))
    finally:
        for store in stores:
            store.close()


def test_only_days_that_ended_are_merged_and_a_second_compaction_finds_nothing(tmp_path: Path) -> None:
    with ParquetStore(tmp_path, symbol_folders=False) as store:
        for minute in range(3):
            store.write("bar", sample_bars(2, origin=minute * 60 * 10**9))
            store.write("bar", sample_bars(2, origin=DAY + minute * 60 * 10**9))
        done = store.compact("bar", before=DAY)
        assert (done.folders, done.parts, done.rows) == (1, 3, 6)
        assert [len(list(d.glob("part-*"))) for d in sorted((tmp_path / "kind=bar").iterdir())] == [1, 3]
        assert store.compact("bar", before=DAY).folders == 0
        assert store.read("bar").height == 12


def test_a_folder_with_an_epoch_under_way_is_left_until_it_commits(tmp_path: Path) -> None:
    with ParquetStore(tmp_path, symbol_folders=False) as store:
        store.hold_for_checkpoints("live")
        store.write("bar", sample_bars(2), checkpoint("live", 1))
        store.write("bar", sample_bars(2, origin=60 * 10**9), checkpoint("live", 2))
        store.write("bar", sample_bars(2, origin=120 * 10**9))  # epoch 3, not committed yet
        assert store.compact("bar", before=DAY).skipped == 1
        assert len(parts(tmp_path)) == 3
        assert store.read("bar").height == 4
        store.write("bar", pl.DataFrame(), checkpoint("live", 3))
        assert store.compact("bar", before=DAY).parts == 3
        assert store.read("bar").height == 6
    with ParquetStore(tmp_path, symbol_folders=False) as again:  # the job runs again: nothing is dead
        again.hold_for_checkpoints("live")
        assert again.read("bar").height == 6
        loaded = again.load_checkpoint("live")
        assert loaded is not None
        assert loaded.epoch == 3


def test_a_day_written_in_both_layouts_is_left_as_it_is(tmp_path: Path) -> None:
    with ParquetStore(tmp_path, symbol_folders=False) as flat:
        flat.write("bar", sample_bars(2))
        flat.write("bar", sample_bars(2, close=9.0))
    with ParquetStore(tmp_path) as nested:
        nested.write("bar", sample_bars(2, revision=1))
        before = nested.read("bar").sort(KEYS)
        assert nested.compact("bar", before=DAY).skipped == 1
        assert nested.read("bar").sort(KEYS).equals(before)


def test_a_read_that_listed_parts_a_compaction_then_merged_lists_again(tmp_path: Path) -> None:
    with ParquetStore(tmp_path, symbol_folders=False) as store:
        for minute in range(4):
            store.write("bar", sample_bars(2, origin=minute * 60 * 10**9))
        expected = store.read("bar").sort(KEYS)
    with ParquetStore(tmp_path, read_only=True) as reader, ParquetStore(tmp_path) as compactor:
        listings = []
        listed = reader._files

        def list_then_compact(where: object) -> list[str]:
            files = listed(where)  # type: ignore[arg-type]
            listings.append(files)
            if len(listings) == 1:
                compactor.compact("bar", before=DAY)  # another process, between the listing and the read
            return files

        reader._files = list_then_compact  # type: ignore[method-assign]
        assert reader.read("bar").sort(KEYS).equals(expected)
    assert [len(f) for f in listings] == [4, 1]


def test_a_read_only_store_cannot_compact(tmp_path: Path) -> None:
    with ParquetStore(tmp_path, read_only=True) as store, pytest.raises(PermanentStoreError, match="read-only"):
        store.compact("bar")


def test_a_part_written_while_the_compaction_merges_still_comes_after_the_merged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live job writes a newer provisional bar into the folder while another process merges it: the merged
    file is named after the newest part it merged, not after the time of the merge, so the newer bar wins."""
    import mdp.stores.parquet as parquet

    with ParquetStore(tmp_path, symbol_folders=False) as writer, ParquetStore(tmp_path) as compactor:
        writer.write("bar", sample_bars(1, quality="provisional", close=1.0))
        writer.write("bar", sample_bars(1, quality="provisional", close=2.0))
        merge = parquet._in_write_order

        def merge_while_a_job_writes(files: list[str], where: pl.Expr | None = None) -> pl.DataFrame:
            rows = merge(files, where)
            writer.write("bar", sample_bars(1, quality="provisional", close=3.0))
            return rows

        monkeypatch.setattr(parquet, "_in_write_order", merge_while_a_job_writes)
        assert compactor.compact("bar", before=DAY).parts == 2
        monkeypatch.undo()
        assert writer.read("bar").get_column("close").to_list() == [3.0]
