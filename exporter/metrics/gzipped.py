"""One gzip body from pieces, of which the large ones that outlive a render are deflated once.

A `/metrics` body is mostly lines that stay the same from one scrape to the next (a snapshot's
counts change only when its organisation is polled again). Those lines are kept between renders
as `Chunk`s (`exporter.metrics.textformat`); here each chunk is also compressed once, on its
own, and every later gzip body that holds it reuses those bytes. Only what changed since (ages,
new polls) is compressed again.

How: every piece of deflate data ends with a full flush, which byte-aligns it and makes it
independent of what came before (no back-reference crosses it), so pieces compressed at
different times can be laid next to each other in one raw deflate stream. The stream ends with
an empty final block, and the gzip trailer holds the CRC-32 and length of the whole body, read
from the pieces (the body itself is never joined for this). Any gzip reader reads the result as
the one member it is.

Not thread-safe: one `Deflater` per render thread.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence

# The gzip header: deflate, no name, no time, unknown OS.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
# An empty final block with fixed Huffman codes: the end of the deflate stream.
FINAL_BLOCK = b"\x03\x00"
LEVEL = 3
# Chunks shorter than this are compressed with their neighbours each time: on its own, a tiny
# piece compresses badly and its flush costs more than it saves.
MIN_KEPT = 4096


class Chunk:
    """Lines kept between renders (their text encoded once, their deflate data made once)."""

    __slots__ = ("_data", "_text", "deflated")

    def __init__(self, text: str) -> None:
        self._text = text
        self._data: bytes | None = None
        self.deflated: bytes | None = None

    @property
    def data(self) -> bytes:
        """The lines as UTF-8 (encoded when first asked for; the text is dropped then)."""
        data = self._data
        if data is None:
            data = self._data = self._text.encode()
            self._text = ""
        return data


Piece = bytes | Chunk


def data_of(piece: Piece) -> bytes:
    return piece if piece.__class__ is bytes else piece.data  # type: ignore[union-attr]


class Deflater:
    """Builds gzip bodies from pieces, with one compressor reset between pieces."""

    def __init__(self, level: int = LEVEL) -> None:
        self._level = level
        self._zlib = self._compressor()

    def _compressor(self) -> zlib._Compress:
        return zlib.compressobj(self._level, zlib.DEFLATED, -zlib.MAX_WBITS)

    def _deflate(self, datas: Iterable[bytes]) -> bytes:
        """Raw deflate data of `datas` in a row, ending in a full flush (see the module doc)."""
        z = self._zlib
        try:
            out = [z.compress(data) for data in datas]
            out.append(z.flush(zlib.Z_FULL_FLUSH))
        except BaseException:
            # A compressor interrupted half-way would leak its input into the next piece.
            self._zlib = self._compressor()
            raise
        return b"".join(out)

    def gzip(self, pieces: Sequence[Piece]) -> bytes:
        """The gzip body of the concatenated pieces."""
        out = [GZIP_HEADER]
        crc, size = 0, 0
        run: list[bytes] = []  # pieces compressed together, now
        for piece in pieces:
            data = data_of(piece)
            crc = zlib.crc32(data, crc)
            size += len(data)
            if piece.__class__ is bytes or len(data) < MIN_KEPT:
                run.append(data)
                continue
            if run:
                out.append(self._deflate(run))
                run = []
            deflated = piece.deflated  # type: ignore[union-attr]
            if deflated is None:
                deflated = piece.deflated = self._deflate((data,))  # type: ignore[union-attr]
            out.append(deflated)
        if run:
            out.append(self._deflate(run))
        out.append(FINAL_BLOCK)
        out.append(struct.pack("<II", crc, size & 0xFFFFFFFF))
        return b"".join(out)
