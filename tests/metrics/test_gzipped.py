"""gzip bodies joined from pieces, the kept ones deflated once: any gzip reader reads them whole."""

from __future__ import annotations

import gzip
import random
import zlib

import pytest

from exporter.metrics.gzipped import MIN_KEPT, Chunk, Deflater, Piece, data_of


def lines(seed: int, count: int) -> str:
    rng = random.Random(seed)
    return "".join(
        f'family{{org="org-{seed:04d}",work_type="Type {rng.randrange(50)}"}} {rng.random()}\n'
        for _ in range(count)
    )


def stream_decompress(body: bytes) -> bytes:
    """As a streaming client reads it, a few bytes at a time."""
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = b"".join(inflate.decompress(body[i : i + 7]) for i in range(0, len(body), 7))
    assert inflate.eof and not inflate.unused_data
    return out + inflate.flush()


def test_pieces_kept_and_new_in_any_order_make_one_valid_gzip_member() -> None:
    kept = [Chunk(lines(i, 200)) for i in range(4)]  # well over MIN_KEPT
    small = Chunk("tiny\n")
    assert all(len(c.data) >= MIN_KEPT for c in kept) and len(small.data) < MIN_KEPT
    deflater = Deflater()
    rng = random.Random(3)
    for round_ in range(6):
        pieces: list[Piece] = [*kept, small, lines(100 + round_, 30).encode(), b"", b"# EOF\n"]
        rng.shuffle(pieces)
        body = deflater.gzip(pieces)
        expected = b"".join(map(data_of, pieces))
        assert gzip.decompress(body) == expected
        assert stream_decompress(body) == expected
        assert zlib.decompress(body, 16 + zlib.MAX_WBITS) == expected


def test_a_kept_chunk_is_deflated_once_and_reused() -> None:
    chunk = Chunk(lines(1, 300))
    deflater = Deflater()
    deflater.gzip([chunk])
    first = chunk.deflated
    assert first is not None
    body = deflater.gzip([b"before\n", chunk, b"after\n"])
    assert chunk.deflated is first and first in body  # the same bytes, spliced in
    assert gzip.decompress(body) == b"before\n" + chunk.data + b"after\n"


class Failing:
    """A compressor that fails half-way through a run (after taking its first piece)."""

    def __init__(self) -> None:
        self.real = zlib.compressobj(3, zlib.DEFLATED, -zlib.MAX_WBITS)

    def compress(self, data: bytes) -> bytes:
        if data == b"boom\n":
            raise MemoryError
        return self.real.compress(data)

    def flush(self, mode: int) -> bytes:
        return self.real.flush(mode)


def test_an_interrupted_piece_does_not_leak_into_the_next_body() -> None:
    deflater = Deflater()
    deflater._zlib = Failing()  # type: ignore[assignment]
    with pytest.raises(MemoryError):
        deflater.gzip([b"half-compressed\n" * 100, b"boom\n"])
    body = deflater.gzip([b"fine\n"])
    assert gzip.decompress(body) == b"fine\n"


def test_the_body_is_much_smaller_than_its_text() -> None:
    chunks = [Chunk(lines(i, 500)) for i in range(3)]
    text = b"".join(c.data for c in chunks)
    assert len(Deflater().gzip(chunks)) < len(text) / 3
