"""The global shuffle's record framing and ordering, for both shuffle paths (as TFDS's shuffle).

A bucket's records for one shard form a segment: an index block (per record, its 64-bit sort key and the
length of its TFRecord frame, big-endian) followed by the records already framed as TFRecords (length, masked
CRC32C of the length, data, masked CRC32C of the data), in key order. Framing happens once, where the records
are built; writing a shard is then copying frames.

Local files (`--shuffle=local_files`, the local DirectRunner): each bucket writes one run file holding its
segments, and references (file, offset, length, count) travel through the GroupByKey. A shard's writer reads
every segment's index, orders all of the shard's records by (key, record bytes) with numpy, and copies the
frames window by window (one read per segment per window), so memory holds the shard's index (about 24 bytes
per record) and one window of frames, whatever the corpus size.

Runner (`--shuffle=runner`, every distributed runner): each segment travels through the runner's GroupByKey as
one blob; a shard orders its blobs' records the same way in memory (one shard, at most about
--target_shard_mb). Either way the output order is a pure function of the records, identical on every runner
and on both paths.
"""
import io
import os
from typing import BinaryIO, Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

import numpy as np

from transforms.example_codec import gather_index
from transforms.tfrecord_io import frame_data, frame_parts, frame_sizes, read_records

_INDEX = np.dtype([("key", ">u8"), ("size", ">u4")])  # per record of a segment: sort key, frame length
Segment = Tuple[str, int, int, int]  # (run path, byte offset, byte length, record count)
Chunk = Tuple[bytes, int]  # TFRecord frames back to back, and how many


def encode_run(shard_ids: np.ndarray, keys: np.ndarray, records: Sequence[bytes]) -> Tuple[bytes, Dict[int, Tuple[int, int, int]]]:
    """Run file bytes for records already sorted by (shard, key), and shard -> (offset, length, count)."""
    out = io.BytesIO()
    table = write_run(out, shard_ids, keys, records)
    return out.getvalue(), table


def write_run(out: BinaryIO, shard_ids: np.ndarray, keys: np.ndarray,
              records: Sequence[bytes]) -> Dict[int, Tuple[int, int, int]]:
    """A run written to `out`: per shard, in order, a segment of an index block, then the records' frames (by
    vectored writes, never joined, where `out` is a local file: `os.writev`). Returns shard -> (offset,
    length, count) of each segment."""
    n = len(records)
    sizes = frame_sizes(records)
    index = np.empty(n, _INDEX)
    index["key"] = keys
    index["size"] = sizes
    parts = frame_parts(records)
    shard_ids = np.asarray(shard_ids, np.int64)
    cuts = np.flatnonzero(np.diff(shard_ids)) + 1 if n else np.zeros(0, np.int64)
    try:
        fd = out.fileno()
        out.flush()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None
    table: Dict[int, Tuple[int, int, int]] = {}
    offset = 0
    for a, b in zip([0] + cuts.tolist(), cuts.tolist() + [n]):
        if a == b:
            continue
        block = index[a:b].tobytes()
        frames = parts[3 * a:3 * b]
        length = len(block) + int(sizes[a:b].sum())
        if fd is None:
            out.write(block + b"".join(frames))
        else:
            _writev_all(fd, [block] + frames)
        table[int(shard_ids[a])] = (offset, length, b - a)
        offset += length
    return table


_IOV_MAX = 1024  # parts per os.writev call (Linux's IOV_MAX)


def _writev_all(fd: int, parts: List[bytes]) -> None:
    """Writes every part, in order, with os.writev; a short write finishes with plain writes."""
    for lo in range(0, len(parts), _IOV_MAX):
        batch = parts[lo:lo + _IOV_MAX]
        want = sum(map(len, batch))
        done = os.writev(fd, batch)
        if done < want:
            rest = memoryview(b"".join(batch))[done:]
            while rest:
                rest = rest[os.write(fd, rest):]


def split_run(data: bytes, index: Dict[int, Tuple[int, int, int]]) -> Dict[int, Tuple[bytes, int]]:
    """encode_run's output cut into one blob per shard: shard -> (segment bytes, record count)."""
    return {shard: (data[offset:offset + length], count) for shard, (offset, length, count) in index.items()}


class _Source:
    """One segment: its index block and reads of its frames (a run file's part, or an in-memory blob). Frames
    are read ahead in blocks of `read_ahead` bytes: a shard's windows ask each segment for consecutive ranges."""

    def __init__(self, name: str, count: int, length: int, read: Callable[[int, int], bytes],
                 read_ahead: int = 0):
        self.name, self.count, self.length, self._read = name, count, length, read
        self.read_ahead = read_ahead
        self._buffer, self._buffer_at = b"", 0

    def index(self) -> np.ndarray:
        size = self.count * _INDEX.itemsize
        if self.length < size:
            raise IOError(f"{self.name}: truncated shuffle segment ({self.length} bytes for {self.count} records)")
        table = np.frombuffer(self._read(0, size), _INDEX)
        if int(table["size"].astype(np.int64).sum()) != self.length - size:
            raise IOError(f"{self.name}: truncated or damaged shuffle segment (frames do not fill it)")
        return table

    def frames(self, lo: int, hi: int) -> bytes:
        """Bytes lo:hi of the segment's frames (after its index block)."""
        if not (self._buffer_at <= lo and hi <= self._buffer_at + len(self._buffer)):
            base = self.count * _INDEX.itemsize
            end = min(self.length - base, max(hi, lo + self.read_ahead))
            self._buffer, self._buffer_at = self._read(base + lo, base + end), lo
            if len(self._buffer) != end - lo:
                raise IOError(f"{self.name}: truncated shuffle segment near frame byte {lo}")
        return self._buffer[lo - self._buffer_at:hi - self._buffer_at]


def _file_source(opener: Callable[[str], BinaryIO], segment: Segment, read_ahead: int) -> _Source:
    path, offset, length, count = segment

    def read(lo: int, hi: int) -> bytes:
        # The file is open only while a piece is read: a merge over thousands of runs never holds them all open.
        with opener(path) as f:
            f.seek(offset + lo)
            return f.read(hi - lo)

    return _Source(f"{path}@{offset}", count, length, read, read_ahead)


def _blob_source(number: int, blob: bytes, count: int) -> _Source:
    view = memoryview(blob)
    return _Source(f"shuffle blob {number}", count, len(blob), lambda lo, hi: bytes(view[lo:hi]))


def _merge(sources: Sequence[_Source], window_bytes: int) -> Iterator[Chunk]:
    """Frames of all sources in (key, record bytes) order, a window of about window_bytes at a time."""
    tables = [s.index() for s in sources]
    if not tables or not sum(len(t) for t in tables):
        return
    key = np.concatenate([t["key"].astype(np.uint64) for t in tables])
    size = np.concatenate([t["size"].astype(np.int64) for t in tables])
    source = np.concatenate([np.full(len(t), i, np.int64) for i, t in enumerate(tables)])
    frame_at = np.concatenate([np.cumsum(t["size"].astype(np.int64)) - t["size"].astype(np.int64) for t in tables])
    # Sources are each in key order; position breaks ties for now (stable), bytes below where keys repeat.
    order = np.lexsort((frame_at, source, key))
    key_sorted = key[order]
    tied = np.flatnonzero(key_sorted[1:] == key_sorted[:-1])
    if len(tied):
        _order_ties_by_bytes(order, tied, sources, source, frame_at, size)
    out_size = size[order]
    ends = np.cumsum(out_size)
    lo = 0
    while lo < len(order):
        hi = max(lo + 1, int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + window_bytes, side="right")))
        yield _gather(order[lo:hi], sources, source, frame_at, size), hi - lo
        lo = hi


def _order_ties_by_bytes(order: np.ndarray, tied: np.ndarray, sources: Sequence[_Source], source: np.ndarray,
                         frame_at: np.ndarray, size: np.ndarray) -> None:
    """Reorders runs of equal keys (in place) by their record bytes, as comparing (key, record) tuples would."""
    i = 0
    while i < len(tied):
        start = int(tied[i])
        end = start + 1
        while i < len(tied) and int(tied[i]) == end - 1:
            end += 1
            i += 1
        members = order[start:end].copy()

        def record(j: int) -> bytes:
            return frame_data(sources[source[j]].frames(int(frame_at[j]), int(frame_at[j] + size[j])))

        order[start:end] = sorted(members.tolist(), key=record)


def _gather(picked: np.ndarray, sources: Sequence[_Source], source: np.ndarray, frame_at: np.ndarray,
            size: np.ndarray) -> bytes:
    """The frames of `picked` records, in that order: one read per source, then one numpy gather."""
    src, at, length = source[picked], frame_at[picked], size[picked]
    n_sources = len(sources)
    lo = np.full(n_sources, np.iinfo(np.int64).max, np.int64)
    hi = np.zeros(n_sources, np.int64)
    np.minimum.at(lo, src, at)
    np.maximum.at(hi, src, at + length)
    pieces, base = [], np.zeros(n_sources, np.int64)
    total = 0
    for s in np.flatnonzero(hi > 0).tolist():
        pieces.append(sources[s].frames(int(lo[s]), int(hi[s])))
        base[s] = total - lo[s]
        total += len(pieces[-1])
    buffer = np.frombuffer(b"".join(pieces), np.uint8)
    return np.take(buffer, gather_index(base[src] + at, length)).tobytes()


def _window_bytes(memory_budget: int) -> int:
    # A window's pieces, their gathered copy and the output chunk: a few MB stay in cache and reuse the heap.
    return max(1 << 16, min(4 << 20, memory_budget // 8))


def merge_segments_framed(opener: Callable[[str], BinaryIO], segments: Sequence[Segment],
                          memory_budget: int = 64 << 20) -> Iterator[Chunk]:
    """TFRecord frames of all segments (run file parts) in (key, record) order, in chunks of about half the
    budget; memory also holds the shard's index, ~24 bytes per record."""
    # Half the budget for read-ahead, spread over the segments; a quarter for a window (and its copies).
    read_ahead = max(1 << 16, min(4 << 20, memory_budget // 2 // max(1, len(segments))))
    sources = [_file_source(opener, s, read_ahead) for s in sorted(segments)]
    return _merge(sources, _window_bytes(memory_budget))


def sort_blobs_framed(blobs: Iterable[Tuple[bytes, int]], memory_budget: int = 64 << 20) -> Iterator[Chunk]:
    """The same for segments that arrived as (blob, record count) through the runner's GroupByKey (the order
    they arrive in does not matter)."""
    sources = [_blob_source(i, blob, count) for i, (blob, count) in enumerate(blobs)]
    return _merge(sources, _window_bytes(memory_budget))


def _unframe(chunks: Iterable[Chunk]) -> List[bytes]:
    return [r for data, _ in chunks for r in read_records(io.BytesIO(data))]


def merge_segments(opener: Callable[[str], BinaryIO], segments: Sequence[Segment],
                   memory_budget: int = 64 << 20) -> List[bytes]:
    """The records themselves, in (key, record) order (what the shard file holds; for checks and tests)."""
    return _unframe(merge_segments_framed(opener, segments, memory_budget))


def sort_blobs(blobs: Iterable[Tuple[bytes, int]]) -> List[bytes]:
    """The records of blobs, in (key, record) order: the order merge_segments gives for the same records."""
    return _unframe(sort_blobs_framed(blobs))
