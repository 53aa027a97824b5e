"""``ReplaySource`` (``source.replay``): replay trades or quotes from a CSV, gzip CSV, Parquet or DBN file.

The file is streamed, never loaded whole: Parquet through polars' streaming engine, CSV (plain or
gzip) through pyarrow's streaming CSV reader as text, reading only the columns the mapping needs, from a
:class:`~mdp.sources.textfile.TextStream` (a byte that is not UTF-8 spoils one row, which is
dead-lettered as ``undecodable``; a gzip file cut off or corrupt mid-way gives its rows up to the break,
and then the source fails naming the file and the position, after those rows went through).
Each batch becomes a canonical frame with vectorised column work (:mod:`mdp.sources.columns`), is
screened for bad rows (:mod:`mdp.sources.validation`: they go to the ``deadletter`` port and never
move the watermark), is re-cut into frames of ``frame_rows`` and sent through
``emit_with_watermarks``, as fast as possible or paced at ``speed`` times event time. At the end, more
than ``max_bad_share`` bad rows fail the job (:mod:`mdp.sources.verdict`). A Databento DBN file
(``.dbn``, ``.dbn.zst``: trades, MBP-1, TBBO, BBO) is decoded in blocks by :mod:`mdp.sources.dbn` into
columns named as the canonical ones (``ts_event``, ``symbol``, ``price``...), so it needs no ``columns``.

``snapshot()`` between two messages gives the source's position in the file (data rows in file order,
the header not counted, plus the malformed lines delivered; see :mod:`mdp.sources.position`), its
watermark tracker, pacer and bad-row counts; ``restore`` on a fresh source makes its next run go on
from there: a Parquet scan starts at the row, a CSV is read again but the rows before it are skipped
as Arrow batches, never turned into frames nor screened.

Example (quotes whose spot rows have no exchange time, so the receive time stands in)::

    ReplaySource(
        path="bookticker.csv.gz",
        kind="quote",
        columns={"ts_event": "transact_ts_ms", "symbol": "{venue}:{symbol}", "bid": "bid_price", ...},
        ts_unit="ms",
        ts_fallback="recv_ts_ns",
        ts_fallback_unit="ns",
        max_out_of_orderness="2s",
    )
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mdp.durations import DurationNs
from mdp.errors import ConfigError, InputError, SourceError
from mdp.runtime.operator import Context, Source
from mdp.runtime.pressure import AdaptiveRate
from mdp.runtime.watermarks import WatermarkTracker
from mdp.sources.columns import ColumnPlan, TsUnit
from mdp.sources.dbn import DbnFile, is_dbn
from mdp.sources.idle import make_pacer, make_tracker
from mdp.sources.pacing import Pacer, cut_frames, rate_limiter
from mdp.sources.params import DEFAULT_MAX_BAD_SHARE, DEFAULT_MIN_EVENT_TIME_TEXT, SourceFlowParams
from mdp.sources.position import Position, pump, resume_state, source_state
from mdp.sources.textfile import TextStream
from mdp.sources.validation import (
    DEADLETTER_PORT,
    DEFAULT_MAX_FUTURE,
    ROW_COLUMN,
    BadRows,
    OnBadRecord,
    RecordScreen,
    SourceKind,
)
from mdp.sources.verdict import TimeSample, judge

FileFormat = Literal["auto", "csv", "parquet", "dbn"]
#: bytes of CSV text parsed per block: large enough to amortise per-block costs on gzip input
CSV_BLOCK_BYTES: Final[int] = 4 << 20


class ReplayParams(SourceFlowParams):
    """Config of ``source.replay``."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="file to replay: .csv, .csv.gz, .parquet, or Databento .dbn / .dbn.zst")
    format: FileFormat = Field(default="auto", description="file format; auto: from the suffix")
    kind: SourceKind = Field(default="trade", description="record kind in the file: 'trade' or 'quote'")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="canonical column -> file column, or a template joining columns such as '{venue}:{symbol}'; "
        "unmapped columns come from a file column of the same name, else null (seq: file row index)",
    )
    ts_unit: TsUnit = Field(default="ns", description="unit of the ts_event column: ns, us, ms, s, or iso (ISO-8601)")
    ts_recv_unit: TsUnit | None = Field(default=None, description="unit of the ts_recv column; None: same as ts_unit")
    ts_fallback: str | None = Field(
        default=None,
        description="file column (or template) giving ts_event in rows where the ts_event column is empty, "
        "e.g. a receive time for rows without an exchange time",
    )
    ts_fallback_unit: TsUnit = Field(default="ns", description="unit of the ts_fallback column")
    max_out_of_orderness: DurationNs = Field(
        default=0, description="how far behind the newest row a row may arrive and still be on time: '250ms', '1s'"
    )
    speed: float | None = Field(
        default=None, ge=0, description="None or 0: as fast as possible; 1.0: real time by event time; 10: 10x"
    )
    size_decimals: int = Field(
        default=0,
        ge=0,
        le=18,
        description="DBN only: sizes are integers of 10^-size_decimals units (5: size 1 is 0.00001); 0: whole units",
    )
    one_sided_quotes: bool = Field(
        default=False,
        description="quotes: a row may carry only a bid or only an ask, the other side 0 or empty (TAQ style); "
        "the absent side becomes null",
    )


class ReplaySource(Source):
    """Replay a trade or quote file as canonical frames and watermarks; bad rows become dead letters.

    Keyword arguments are the fields of :class:`ReplayParams`; durations accept ``"250ms"`` or int ns.
    Rows that fail :mod:`mdp.sources.validation` never reach ``out`` nor move the watermark: they go
    to the ``deadletter`` port with their reason and raw values (see ``on_bad_record``). ``stats()``
    reports ``rows_emitted``, ``offset`` (rows read from the file so far), ``bad_records`` and
    ``bad_reasons`` (per reason).

    Raises (when the graph starts):
        SourceError: the file is missing or unreadable, a mapped column is not in it, not one
            timestamp of the first block can be read (a wrong ``ts_unit``), or a row is bad and
            ``on_bad_record`` is ``error``; the message says what to change.
        InputError: after the rows before it went through: a gzip file cut off or corrupt (naming
            the file, the byte and the line), a corrupt Parquet row group, or more than
            ``max_bad_share`` of the rows were bad (suggesting a ``ts_unit`` when that explains them).
    """

    Params: ClassVar[type[BaseModel] | None] = ReplayParams
    output_kind: ClassVar[str | None] = "trade"
    outputs: Sequence[str] = ("out", DEADLETTER_PORT)

    def __init__(
        self,
        *,
        path: str | Path,
        format: FileFormat = "auto",
        kind: SourceKind = "trade",
        columns: dict[str, str] | None = None,
        ts_unit: TsUnit = "ns",
        ts_recv_unit: TsUnit | None = None,
        ts_fallback: str | None = None,
        ts_fallback_unit: TsUnit = "ns",
        max_out_of_orderness: int | str = 0,
        speed: float | None = None,
        frame_rows: int = 65_536,
        on_bad_record: OnBadRecord = "deadletter",
        max_future: int | str | None = DEFAULT_MAX_FUTURE,
        min_event_time: int | str | None = DEFAULT_MIN_EVENT_TIME_TEXT,
        max_bad_share: float | None = DEFAULT_MAX_BAD_SHARE,
        adaptive_rate: bool = True,
        watermark: Literal["global", "per_key"] = "global",
        idle_timeout: int | str | None = None,
        one_sided_quotes: bool = False,
        size_decimals: int = 0,
    ) -> None:
        try:
            self.params = ReplayParams.model_validate(
                {
                    "path": str(path),
                    "format": format,
                    "kind": kind,
                    "columns": columns or {},
                    "ts_unit": ts_unit,
                    "ts_recv_unit": ts_recv_unit,
                    "ts_fallback": ts_fallback,
                    "ts_fallback_unit": ts_fallback_unit,
                    "max_out_of_orderness": max_out_of_orderness,
                    "speed": speed,
                    "frame_rows": frame_rows,
                    "on_bad_record": on_bad_record,
                    "max_future": max_future,
                    "min_event_time": min_event_time,
                    "max_bad_share": max_bad_share,
                    "adaptive_rate": adaptive_rate,
                    "watermark": watermark,
                    "idle_timeout": idle_timeout,
                    "one_sided_quotes": one_sided_quotes,
                    "size_decimals": size_decimals,
                }
            )
        except ValidationError as exc:
            raise ConfigError(f"invalid source.replay params: {exc}") from exc
        # graph validation reads output_kind per node: it follows params.kind here
        setattr(self, "output_kind", self.params.kind)  # noqa: B010
        self.path = Path(self.params.path)
        self.offset = 0
        self._position = Position()
        self._resume: dict[str, Any] | None = None
        self._sample: TimeSample | None = None
        self._plan: ColumnPlan | None = None
        self._screen: RecordScreen | None = None
        self._tracker: WatermarkTracker | None = None
        self._pacer: Pacer | None = None
        self._limiter: AdaptiveRate | None = None
        #: the text stream of the CSV being read (its break, if any, ends the run with an error)
        self._stream: TextStream | None = None
        self._parquet_break: str | None = None

    @property
    def rows_emitted(self) -> int:
        """Good rows sent on ``out`` so far (across a restore)."""
        return self._position.emitted

    def snapshot(self) -> dict[str, Any]:
        """The source between two messages: its position in the file (data rows in file order, the
        header not counted, and malformed lines; see :mod:`mdp.sources.position`), bad-row counts,
        watermark tracker, pacer and the time sample of its verdict."""
        if self._resume is not None:  # restored, not run since
            return self._resume
        state = source_state(self._position, self._screen, self._tracker, self._pacer)
        state["path"] = str(self.path)
        state["time_sample"] = [] if self._sample is None else list(self._sample.values)
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Make the next ``run`` go on from ``state``. Parquet seeks: the scan starts at the row (whole
        row groups before it are not decoded). CSV is read again from its start, but the Arrow batches
        before the position are not turned into frames nor screened, only counted."""
        self._resume = state
        self._position = Position()
        self._position.restore(state["position"])

    def port_kind(self, port: str) -> str | None:
        return DEADLETTER_PORT if port == DEADLETTER_PORT else self.params.kind

    def stats(self) -> dict[str, Any]:
        bad = self._screen.stats() if self._screen else {"bad_records": 0, "bad_reasons": {}}
        limit = self._limiter.stats() if self._limiter else {}  # once pressure came
        return {"rows_emitted": self.rows_emitted, "offset": self.offset, **bad, **limit}

    async def open(self, ctx: Context) -> None:
        """Check the file and the column mapping before the first row, so a bad config fails at once."""
        self._plan = self.plan()

    def preflight(self) -> None:
        """For ``mdp validate``: the file exists and every mapped column is in it."""
        self.plan()

    def plan(self) -> ColumnPlan:
        """Resolve the format and the column mapping against the file's header."""
        p = self.params
        if not self.path.is_file():
            raise SourceError(
                f"replay file {str(self.path)!r} does not exist (working directory {str(Path.cwd())!r}); "
                "fix params.path"
            )
        fmt = resolve_format(self.path, p.format)
        if fmt == "dbn":
            file_columns = self._dbn().columns()
        else:
            file_columns = _parquet_columns(self.path) if fmt == "parquet" else _csv_header(self.path)
        units: dict[str, TsUnit] = {"ts_event": p.ts_unit, "ts_recv": p.ts_recv_unit or p.ts_unit}
        return ColumnPlan(
            p.kind,
            p.columns,
            file_columns,
            units,
            where=str(self.path),
            ts_fallback=p.ts_fallback,
            ts_fallback_unit=p.ts_fallback_unit,
        )

    def screen(self, ctx: Context) -> RecordScreen:
        """The bad-record handling of one run, on the runtime's clock."""
        p = self.params
        plan = self._plan
        names = {} if plan is None else {n: s.column or s.template for n, s in plan.specs.items() if s.how != "null"}
        return RecordScreen(
            p.kind,
            policy=p.on_bad_record,
            max_future=p.max_future,
            min_event_time=p.min_event_time,
            clock=ctx.clock,
            source=ctx.node,
            where=str(self.path),
            one_sided=p.one_sided_quotes,
            names=names,
        )

    async def run(self, ctx: Context) -> None:
        plan = self._plan = self._plan or self.plan()
        screen = self._screen = self.screen(ctx)
        p = self.params
        tracker = self._tracker = make_tracker(p.watermark, p.max_out_of_orderness)
        pacer = self._pacer = make_pacer(ctx.clock, p.speed, tracker, p.idle_timeout)
        limiter = self._limiter = rate_limiter(ctx, p.adaptive_rate)
        ts_spec = plan.specs["ts_event"]
        sample = self._sample = TimeSample(ts_spec.column if ts_spec.how == "column" else None)
        resume, self._resume = self._resume, None
        position = self._position = Position() if resume is None else resume_state(resume, screen, tracker, pacer)
        if resume is not None:
            sample.values.extend(resume["time_sample"])
        self.offset = position.good
        self._parquet_break = None
        items = cut_frames(self._screened(plan, screen, position.good), p.frame_rows, position.emitted)
        try:
            if not await pump(ctx, items, screen, position, tracker, pacer, limiter, sample.add):
                return
        finally:
            screen.warn_unrouted(ctx.node)
        broken = self._broken_tail(screen)
        if broken is not None:
            raise broken
        now = ctx.clock.now_ns()
        judge(
            node=ctx.node,
            where=f"source {ctx.node!r} ({self.path})",
            rows_read=self.offset + screen.counts["malformed_line"],
            counts=screen.counts,
            max_bad_share=p.max_bad_share,
            ts_unit=p.ts_unit,
            sample=sample,
            plausible=(p.min_event_time or 0, now + (p.max_future if p.max_future is not None else 86_400 * 10**9)),
        )

    def _broken_tail(self, screen: RecordScreen) -> InputError | None:
        """The error for a file that broke off after some rows (None: it was read to its end)."""
        rows = self.offset
        lines = rows + screen.counts["malformed_line"] + 1  # + the header
        done = f"the {rows:,} rows before it (through line {lines:,}) were read and went through"
        after = (
            "re-fetch or repair the file and run the job again: stores upsert bars by key, so the complete "
            "bars of the last minutes before the break replace the ones written now"
        )
        stream = self._stream
        if stream is not None and stream.broken is not None:
            b = stream.broken
            cut_line = f", and the {b.dropped:,} bytes of the cut line after them dropped" if b.dropped else ""
            return InputError(
                f"{str(self.path)!r} breaks off at byte {b.file_offset:,} of {b.file_size:,}: {b.reason}; "
                f"{done}{cut_line}; {after}"
            )
        if self._parquet_break is not None:
            return InputError(
                f"{str(self.path)!r} cannot be read on after row {rows:,}: {self._parquet_break}; the {rows:,} rows "
                f"before it were read and went through (a batch that held the damage is lost whole); {after}"
            )
        return None

    def frames(self, plan: ColumnPlan, screen: RecordScreen) -> Iterator[pl.DataFrame | BadRows]:
        """Good rows as canonical frames of at most ``frame_rows`` rows, in file order, and the dead
        letters of each block ahead of its good rows (blocking; runs on a thread)."""
        for item in cut_frames(self._screened(plan, screen, 0), self.params.frame_rows):
            yield item.drop(ROW_COLUMN) if isinstance(item, pl.DataFrame) else item

    def _screened(self, plan: ColumnPlan, screen: RecordScreen, start: int) -> Iterator[pl.DataFrame | BadRows]:
        """Screened blocks of the file from data row ``start`` on, their rows numbered."""
        fmt = resolve_format(self.path, self.params.format)
        malformed: list[tuple[int | None, str]] = []
        stream = None
        if fmt == "parquet":
            batches = self._parquet_frames(plan.needed, start)
        elif fmt == "dbn":
            batches = (f.select(plan.needed) for f in self._dbn().frames(self.params.frame_rows, start))
        else:
            stream = self._stream = _open_text(self.path)
            batches = _csv_frames(self.path, plan, malformed, stream, start)
        first = start == 0
        for raw in batches:
            text_replaced = stream is not None and stream.replaced > 0
            parsed = plan.parse(raw, self.offset, check_units=first and raw.height > 0, check_text=text_replaced)
            first = first and raw.height == 0
            good, bad = screen.screen(
                self._position.number(parsed.frame, self.offset),
                raw=raw,
                first_row=self.offset,
                problems=parsed.problems,
                columns=parsed.columns,
            )
            self.offset += raw.height
            if bad is not None:
                yield bad
            if malformed:  # lines the reader skipped while it read this batch
                yield screen.malformed(malformed)
                malformed.clear()
            yield good
        if malformed:
            yield screen.malformed(malformed)

    def _parquet_frames(self, columns: list[str], start: int) -> Iterator[pl.DataFrame]:
        """Parquet batches from row ``start``; a file that fails after some batches ends them and sets
        ``_parquet_break``."""
        sent = start > 0
        try:
            for frame in _parquet_frames(self.path, columns, self.params.frame_rows, start):
                sent = sent or frame.height > 0
                yield frame
        except SourceError as exc:
            if not sent:
                raise
            cause = exc.__cause__
            self._parquet_break = f"{type(cause).__name__}: {cause}" if cause else str(exc)

    def _dbn(self) -> DbnFile:
        """The DBN file, checked to hold records of ``params.kind``."""
        dbn = DbnFile(self.path, size_decimals=self.params.size_decimals)
        if dbn.kind != self.params.kind:
            if dbn.kind == "bar":
                raise SourceError(
                    f"{str(self.path)!r} holds DBN {dbn.schema} bars; read it with source.dbn_bars, not source.replay"
                )
            raise SourceError(
                f"{str(self.path)!r} holds DBN {dbn.schema} records, which are {dbn.kind}s; set params.kind: {dbn.kind}"
            )
        return dbn


def _open_text(path: Path) -> TextStream:
    try:
        return TextStream(path)
    except OSError as exc:
        raise SourceError(f"cannot read {str(path)!r}: {exc}; check the file and its permissions") from exc


def resolve_format(path: Path, fmt: FileFormat) -> Literal["csv", "parquet", "dbn"]:
    """The file format: as configured, or from the suffix (.csv, .csv.gz, .parquet, .dbn, .dbn.zst)."""
    if fmt != "auto":
        return fmt
    name = path.name.lower()
    if is_dbn(path):
        return "dbn"
    if name.endswith((".csv", ".csv.gz")):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    raise SourceError(
        f"cannot tell the format of {str(path)!r} from its name (known suffixes: .csv, .csv.gz, .parquet, .dbn, "
        ".dbn.zst); set params.format to 'csv', 'parquet' or 'dbn'"
    )


def _csv_header(path: Path) -> list[str]:
    """The column names on the first line (gzip is detected from the suffix)."""
    try:
        with TextStream(path, chunk_bytes=1 << 16) as stream:
            head = b""
            while b"\n" not in head:
                chunk = stream.read(1 << 16)
                if not chunk:
                    break
                head += chunk
    except OSError as exc:
        raise SourceError(f"cannot read {str(path)!r} as CSV: {exc}; check that it is a CSV or gzip CSV file") from exc
    line = head.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
    if not line:
        raise SourceError(f"{str(path)!r} has no header line; a replayed CSV needs one naming its columns")
    return next(csv.reader(io.StringIO(line)))


def _csv_frames(
    path: Path, plan: ColumnPlan, malformed: list[tuple[int | None, str]], stream: TextStream, start: int = 0
) -> Iterator[pl.DataFrame]:
    """Stream frames of the columns ``plan`` needs from the text of a CSV or gzip CSV file (pyarrow's
    streaming reader over ``stream``, which ends early, cleanly, where a gzip file breaks off).

    A line that does not split into the header's columns is skipped and appended to ``malformed`` as
    ``(line number, text)``; the reader runs on one thread so it knows the line numbers.
    """
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    def skip(row: Any) -> str:
        malformed.append((row.number, row.text))
        return "skip"

    read = pa_csv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False)
    parse = pa_csv.ParseOptions(invalid_row_handler=skip)
    convert = pa_csv.ConvertOptions(
        include_columns=plan.needed,
        column_types=plan.arrow_types(),
        # only an empty field is missing: pyarrow's default list would turn the ticker "NA" into null
        null_values=[""],
        strings_can_be_null=True,
    )
    try:
        with stream:
            reader = pa_csv.open_csv(stream, read_options=read, parse_options=parse, convert_options=convert)
            for batch in reader:
                if start >= batch.num_rows:
                    start -= batch.num_rows
                    continue
                if start:
                    batch, start = batch.slice(start), 0
                frame = pl.from_arrow(batch)
                assert isinstance(frame, pl.DataFrame)
                yield frame
    except (pa.ArrowException, OSError) as exc:
        raise _csv_error(path, plan, exc) from exc


def _csv_error(path: Path, plan: ColumnPlan, exc: Exception) -> SourceError:
    """Translate a pyarrow CSV error (the text is valid UTF-8 by then, so it is about the CSV itself)."""
    return SourceError(f"cannot read {str(path)!r} as CSV: {exc}; fix the file or params.format")


def _parquet_columns(path: Path) -> list[str]:
    try:
        return list(pl.read_parquet_schema(path))
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise SourceError(f"cannot read {str(path)!r} as Parquet: {exc}; check the file or set params.format") from exc


def _parquet_frames(path: Path, columns: list[str], batch_rows: int, start: int = 0) -> Iterator[pl.DataFrame]:
    """Stream frames of ``columns`` from a Parquet file from row ``start``, ``batch_rows`` at a time, with
    polars' streaming engine: it decodes only those columns, ahead of the consumer but with bounded
    memory (about 2.5x faster than pyarrow's ``iter_batches`` and its conversion to polars)."""
    scan = pl.scan_parquet(path).select(columns)
    done = start
    try:
        for frame in (scan.slice(start) if start else scan).collect_batches(chunk_size=batch_rows, engine="streaming"):
            done += frame.height
            yield frame
        return
    except (OSError, pl.exceptions.PolarsError):
        pass
    # The engine decodes ahead (polars 2.2 by several row groups), so its error can come batches before
    # the damage. Read on one window at a time, each decoding only its own rows, up to the one that holds it.
    while True:
        try:
            frame = scan.slice(done, batch_rows).collect()
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise SourceError(f"cannot read {str(path)!r} as Parquet: {exc}; check the file") from exc
        if frame.height == 0:
            return
        done += frame.height
        yield frame
