"""The global shuffle's record framing and ordering, for both shuffle paths (as TFDS's shuffle).

Local files (`--shuffle=local_files`, the local DirectRunner): each bucket writes one run file holding
its records sorted by (shard, key), with an index of where each shard's records lie. A shard is written
by a streaming k-way merge of its slices of all runs, so memory holds one record per run, whatever the
corpus size.

Runner (`--shuffle=runner`, every distributed runner): each bucket's slice for a shard travels through the
runner's GroupByKey as one blob in the same framing; a shard sorts its blobs' records in memory (one
shard, at most about --target_shard_mb). Either way the output order (by 64-bit key, ties by bytes) is a
pure function of the records, identical on every runner and on both paths.
"""
import heapq
import io
import struct
from typing import BinaryIO, Callable, Dict, Iterable, Iterator, List, Sequence, Tuple

import numpy as np

_HEADER = struct.Struct(">QI")  # big-endian key so byte order = numeric order; record length
Segment = Tuple[str, int, int, int]  # (run path, byte offset, byte length, record count)


def encode_run(shard_ids: np.ndarray, keys: np.ndarray, records: Sequence[bytes]) -> Tuple[bytes, Dict[int, Tuple[int, int, int]]]:
    """Run file bytes for records already sorted by (shard, key), and shard -> (offset, length, count)."""
    buf = io.BytesIO()
    index: Dict[int, Tuple[int, int, int]] = {}
    pack = _HEADER.pack
    shard_list = shard_ids.tolist()
    key_list = keys.tolist()
    i, n = 0, len(records)
    while i < n:
        shard = shard_list[i]
        start = buf.tell()
        j = i
        while j < n and shard_list[j] == shard:
            buf.write(pack(key_list[j], len(records[j])))
            buf.write(records[j])
            j += 1
        index[shard] = (start, buf.tell() - start, j - i)
        i = j
    return buf.getvalue(), index


def _iter_segment(opener: Callable[[str], BinaryIO], segment: Segment, chunk_bytes: int) -> Iterator[Tuple[int, bytes]]:
    """Records of one segment, read in chunks; the file is open only while a chunk is read, so a
    merge over thousands of runs never holds thousands of open files."""
    path, offset, length, _ = segment
    pos, end = offset, offset + length
    buf, p = b"", 0
    header = _HEADER.size
    while True:
        avail = len(buf) - p
        need = header if avail < header else header + _HEADER.unpack_from(buf, p)[1]
        if avail < need:
            if pos >= end:
                if avail:
                    raise IOError(f"{path}: truncated run file near byte {pos}")
                return
            with opener(path) as f:
                f.seek(pos)
                chunk = f.read(min(max(chunk_bytes, need - avail), end - pos))
            if not chunk:
                raise IOError(f"{path}: truncated run file near byte {pos}")
            pos += len(chunk)
            buf, p = buf[p:] + chunk, 0
            continue
        key, size = _HEADER.unpack_from(buf, p)
        yield key, buf[p + header:p + header + size]
        p += header + size


def merge_segments(opener: Callable[[str], BinaryIO], segments: Sequence[Segment],
                   memory_budget: int = 64 << 20) -> Iterator[bytes]:
    """Records of all segments in (key, bytes) order, by a streaming k-way merge in bounded memory."""
    segments = sorted(segments)
    chunk = max(4096, min(1 << 20, memory_budget // max(1, len(segments))))
    for _, data in heapq.merge(*[_iter_segment(opener, s, chunk) for s in segments]):
        yield data


def split_run(data: bytes, index: Dict[int, Tuple[int, int, int]]) -> Dict[int, Tuple[bytes, int]]:
    """encode_run's output cut into one blob per shard: shard -> (framed records, record count)."""
    return {shard: (data[offset:offset + length], count) for shard, (offset, length, count) in index.items()}


def iter_blob(blob: bytes) -> Iterator[Tuple[int, bytes]]:
    """(key, record) pairs of one blob of framed records."""
    header = _HEADER.size
    p, n = 0, len(blob)
    while p < n:
        if p + header > n:
            raise IOError(f"truncated shuffle blob near byte {p}")
        key, size = _HEADER.unpack_from(blob, p)
        if p + header + size > n:
            raise IOError(f"truncated shuffle blob near byte {p}")
        yield key, blob[p + header:p + header + size]
        p += header + size


def sort_blobs(blobs: Iterable[bytes]) -> List[bytes]:
    """Records of all blobs in (key, bytes) order: the order merge_segments gives for the same records."""
    items = [item for blob in blobs for item in iter_blob(blob)]
    items.sort()
    return [data for _, data in items]
