"""``TextStream``: UTF-8 bytes for the CSV reader, one bad byte spoiling one value, a broken gzip ending
cleanly at the last whole line before the break; and overflow-checked scaling of timestamps."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mdp.sources.columns import scale_to_ns
from mdp.sources.textfile import TextStream
from mdp.sources.verdict import guess_unit

TEXT = "".join(f"{i},BTC{'é' * (i % 3)},{i}.5\n" for i in range(5_000)).encode()


def read_all(path: Path, chunk_bytes: int = 1 << 20, size: int = 4096) -> tuple[bytes, TextStream]:
    stream = TextStream(path, chunk_bytes=chunk_bytes)
    parts = []
    while piece := stream.read(size):
        parts.append(piece)
    return b"".join(parts), stream


@pytest.mark.parametrize("chunk_bytes", [1, 7, 1 << 20])
def test_plain_and_gzip_text_come_back_byte_for_byte(tmp_path: Path, chunk_bytes: int) -> None:
    (tmp_path / "t.csv").write_bytes(TEXT)
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(TEXT))
    for name in ("t.csv", "t.csv.gz"):
        data, stream = read_all(tmp_path / name, chunk_bytes)
        assert data == TEXT
        assert (stream.broken, stream.replaced) == (None, 0)


def test_multi_member_gzip_with_zero_padding_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "t.csv.gz"
    path.write_bytes(gzip.compress(TEXT[:1000]) + gzip.compress(TEXT[1000:]) + b"\0" * 64)
    data, stream = read_all(path)
    assert data == TEXT
    assert stream.broken is None


@settings(max_examples=30, deadline=None)
@given(cut=st.floats(0.02, 0.98))
def test_a_cut_gzip_gives_every_whole_line_before_the_break_and_says_where(
    tmp_path_factory: object, cut: float
) -> None:
    packed = gzip.compress(TEXT)
    tmp = Path(str(tmp_path_factory.mktemp("cut")))  # type: ignore[attr-defined]
    prefix = packed[: int(len(packed) * cut)]
    (tmp / "t.csv.gz").write_bytes(prefix)
    data, stream = read_all(tmp / "t.csv.gz")
    readable = zlib.decompressobj(31).decompress(prefix)
    assert data == readable[: readable.rfind(b"\n") + 1]  # every whole line the prefix holds, no more
    assert stream.broken is not None
    assert stream.broken.file_offset == len(prefix)
    assert "cut off" in stream.broken.reason


def test_a_corrupt_gzip_stops_at_the_damage(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(TEXT * 4))
    packed[len(packed) // 2 : len(packed) // 2 + 8] = b"\xff" * 8
    (tmp_path / "t.csv.gz").write_bytes(bytes(packed))
    data, stream = read_all(tmp_path / "t.csv.gz")
    assert stream.broken is not None
    assert "corrupt" in stream.broken.reason
    assert data.endswith(b"\n")


def test_bytes_that_are_not_utf8_become_replacement_characters_even_split_across_reads(tmp_path: Path) -> None:
    raw = "a,b\n1,é€\n".encode() + b"2,\xff\n3,\xe2\x82\n4,ok\n"
    (tmp_path / "t.csv").write_bytes(raw)
    for chunk_bytes in (1, 2, 3, 100):
        data, stream = read_all(tmp_path / "t.csv", chunk_bytes, size=3)
        assert data.decode() == "a,b\n1,é€\n2,\ufffd\n3,\ufffd\n4,ok\n"
        assert stream.replaced == 2


@pytest.mark.parametrize(
    ("unit", "limit"), [("s", 9_223_372_036), ("ms", 9_223_372_036_854), ("us", 9_223_372_036_854_775)]
)
def test_scaling_to_ns_never_wraps_past_int64(unit: str, limit: int) -> None:
    for values in (
        pl.Series([limit, limit + 1, -limit - 1, 1]),
        pl.Series([str(limit), f"{limit + 1}", "1.5e30", "1"]),
    ):
        ns, overflow = scale_to_ns(values, unit, "t", "t.csv")  # type: ignore[arg-type]
        assert ns.to_list()[1:3] == [None, None]
        assert ns[0] == limit * {"s": 10**9, "ms": 10**6, "us": 10**3}[unit]
        assert overflow is not None
        assert overflow.to_list() == [False, True, True, False]


def test_the_unit_guess_is_the_one_that_makes_most_values_plausible() -> None:
    low, high = 631_152_000 * 10**9, 1_900_000_000 * 10**9  # 1990 .. 2030
    assert guess_unit(["1723161255342", "1723161255343"], low, high) == (
        "ms",
        "1723161255342 is 2024-08-08T23:54:15.342Z in milliseconds",
    )
    assert guess_unit(["1723161255"], low, high) == ("s", "1723161255 is 2024-08-08T23:54:15Z in seconds")
    assert guess_unit(["1723161255342000000"], low, high) is not None
    assert guess_unit(["12", "13"], low, high) is None
