"""The bytes of a plain or gzip text file for a CSV parser: a bad byte spoils one value, a broken tail ends it.

pyarrow's CSV reader fails a whole block on one byte that is not UTF-8, and a gzip stream cut off
mid-way fails the block it was in, so one bad byte or a short download would cost a whole file.
:class:`TextStream` sits in between (pyarrow reads it like a file):

- every byte sequence that is not UTF-8 becomes U+FFFD (the replacement character), so the parser
  never fails on text; the rows holding one are dead-lettered as ``undecodable``, naming the column
  (:mod:`mdp.sources.columns`). ``replaced`` counts them; a pure-ASCII chunk passes untouched.
- a gzip stream that is truncated or corrupt ends at the last complete line before the damage (a cut
  line could pass for a good row with a shortened number), and ``broken`` says where and why, so the
  rows before the break are read and the source then fails naming the file and position.

Gzip is recognised by its magic bytes and inflated by pyarrow (about twice as fast as :mod:`zlib`);
when pyarrow fails on it, the file is inflated again with :mod:`zlib` from the start, skipping the
text already delivered, so the break is found to the byte and no complete line before it is lost.
Multi-member gzip files (``cat a.gz b.gz``), with or without zero padding, are read whole.
"""

from __future__ import annotations

import codecs
import collections
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

if TYPE_CHECKING:
    import pyarrow as pa

#: compressed bytes read from the file at a time
CHUNK_BYTES: Final[int] = 1 << 20
#: compressed bytes given to zlib at a time (fallback only): the text of at most this much is lost before
#: a corrupt spot
_INFLATE_BYTES: Final[int] = 1 << 12
_GZIP_MAGIC: Final = b"\x1f\x8b"
#: zlib's window bits for a gzip header and trailer
_GZIP_WBITS: Final = 31


@dataclass(frozen=True, slots=True)
class Break:
    """Where and why a compressed stream could not be read on.

    ``file_offset`` is the compressed byte at which reading stopped, ``text_bytes`` the decompressed
    bytes delivered before it (the partial line after the last newline is dropped, ``dropped`` bytes).
    """

    reason: str
    file_offset: int
    file_size: int
    text_bytes: int
    dropped: int


class TextStream:
    """A read-only, forward-only file of UTF-8 text bytes over a plain or gzip file (see the module doc).

    Args:
        path: the file; gzip when it starts with the gzip magic bytes.
        chunk_bytes: bytes read from the file at a time.

    Raises:
        OSError: the file cannot be opened or read (not a broken stream: that sets ``broken``).
    """

    def __init__(self, path: Path, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.path = path
        self.chunk_bytes = chunk_bytes
        self._file: BinaryIO = path.open("rb")
        self.file_size = path.stat().st_size
        self.gzip = self._file.read(2) == _GZIP_MAGIC
        self._file.seek(0)
        self._inflate = zlib.decompressobj(_GZIP_WBITS) if self.gzip else None
        self._fast: pa.CompressedInputStream | None = None  # pyarrow's inflater, until it fails
        if self.gzip:
            import pyarrow as pa  # the CSV reader's library, loaded only for CSV input

            self._fast = pa.CompressedInputStream(pa.OSFile(str(path)), "gzip")
        self._inflated = 0  # text bytes inflated so far (what a fallback skips)
        self._skip = 0  # text bytes the zlib fallback must inflate and drop (pyarrow delivered them)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = b""  # decompressed bytes after the last newline, held until the next one
        self._out: collections.deque[bytes] = collections.deque()  # pieces ready for the reader
        self._ready = 0  # bytes in _out
        self._eof = False
        self._in_member = False  # inside a gzip member: the file must not end here
        #: undecodable byte sequences replaced by U+FFFD so far
        self.replaced = 0
        #: decompressed text bytes delivered so far
        self.text_bytes = 0
        #: set when a gzip stream is truncated or corrupt; the text before it has been delivered
        self.broken: Break | None = None
        self.closed = False

    # -- the file protocol pyarrow uses ----------------------------------------------------------------

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return False

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all the rest when negative); ``b""`` at the end."""
        while not self._eof and (size < 0 or self._ready < size):
            self._fill()
        if size < 0 or size >= self._ready:
            data = b"".join(self._out)
            self._out.clear()
        else:
            parts = []
            want = size
            while want:
                piece = self._out.popleft()
                if len(piece) > want:
                    self._out.appendleft(piece[want:])
                    piece = piece[:want]
                parts.append(piece)
                want -= len(piece)
            data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._ready -= len(data)
        self.text_bytes += len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._close_fast()
            self._file.close()

    def __enter__(self) -> TextStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------

    def _fill(self) -> None:
        """Read one chunk from the file and add its complete lines to ``_out``."""
        if self._fast is not None:
            self._fill_fast()
            return
        start = self._file.tell()
        chunk = self._file.read(self.chunk_bytes)
        if self._inflate is None:
            if chunk:
                self._add(chunk)
            else:
                self._finish()
            return
        text, error, at = self._inflate_chunk(chunk)
        if self._skip:
            dropped = min(self._skip, len(text))
            self._skip -= dropped
            text = text[dropped:]
        self._add(text)
        if error is not None:
            self._break(f"the gzip data is corrupt ({error})", start + at)
        elif not chunk:
            if self._in_member:
                self._break("the gzip stream is cut off before its end (a truncated file)")
            else:
                self._finish()

    def _fill_fast(self) -> None:
        """Inflate one chunk with pyarrow; on any failure, start over with zlib (see the module doc)."""
        assert self._fast is not None
        try:
            text = self._fast.read(self.chunk_bytes * 4)
        except OSError:
            self._close_fast()
            self._file.seek(0)
            self._skip = self._inflated
            return
        self._inflated += len(text)
        if text:
            self._add(text)
        else:
            self._finish()

    def _close_fast(self) -> None:
        fast, self._fast = self._fast, None
        if fast is not None:
            try:
                fast.close()
            except OSError:
                pass  # a broken stream may fail to close: the fallback reads the file on its own handle

    def _inflate_chunk(self, chunk: bytes) -> tuple[bytes, zlib.error | None, int]:
        """Decompress ``chunk``, starting a new gzip member where one ends (multi-member files); the
        text before a corrupt spot comes back with the error and the spot's offset in ``chunk``."""
        assert self._inflate is not None
        parts: list[bytes] = []
        for at in range(0, len(chunk), _INFLATE_BYTES):
            error = self._inflate_piece(chunk[at : at + _INFLATE_BYTES], parts)
            if error is not None:
                return b"".join(parts), error, at
        return b"".join(parts), None, len(chunk)

    def _inflate_piece(self, data: bytes, parts: list[bytes]) -> zlib.error | None:
        """Decompress ``data`` into ``parts``; the error if it is corrupt."""
        assert self._inflate is not None
        while data:
            if not self._in_member and not data.strip(b"\x00"):
                break  # zero padding after the last member is common and harmless
            self._in_member = True
            try:
                parts.append(self._inflate.decompress(data))
            except zlib.error as exc:
                return exc
            if not self._inflate.eof:
                break
            data = self._inflate.unused_data
            self._inflate = zlib.decompressobj(_GZIP_WBITS)
            self._in_member = False
        return None

    def _add(self, data: bytes) -> None:
        """Queue the complete lines of ``_pending + data``, as valid UTF-8 (copying as little as possible:
        these are megabytes per call)."""
        cut = data.rfind(b"\n") + 1
        if not cut:
            self._pending += data
            return
        if self._pending:
            self._queue(self._pending)
        self._queue(data if cut == len(data) else data[:cut])
        self._pending = data[cut:]

    def _queue(self, piece: bytes) -> None:
        """Queue ``piece`` with every sequence that is not UTF-8 replaced by U+FFFD."""
        if not (piece.isascii() and not self._utf8.getstate()[0]):
            text = self._utf8.decode(piece)
            self.replaced += text.count("\ufffd") - piece.count("\ufffd".encode())
            piece = text.encode()
        self._out.append(piece)
        self._ready += len(piece)

    def _finish(self) -> None:
        if self._pending:
            self._queue(self._pending)
            self._pending = b""
        tail = self._utf8.decode(b"", final=True)  # an incomplete sequence at the very end
        if tail:
            self.replaced += 1
            self._out.append(tail.encode())
            self._ready += len(tail.encode())
        self._eof = True

    def _break(self, reason: str, file_offset: int | None = None) -> None:
        self.broken = Break(
            reason=reason,
            file_offset=self._file.tell() if file_offset is None else file_offset,
            file_size=self.file_size,
            text_bytes=self.text_bytes + self._ready,
            dropped=len(self._pending),
        )
        self._pending = b""
        self._eof = True
