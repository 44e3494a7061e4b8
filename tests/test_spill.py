"""The spill shuffle: run files merge into one key-ordered stream, independent of how runs were cut."""
import io
import random

import numpy as np
import pytest

from transforms import keys, spill


def _run(records_with_keys, num_shards):
    ks = np.array([k for k, _ in records_with_keys], dtype=np.uint64)
    shards = np.array([keys.shard_of(int(k), num_shards) for k in ks], dtype=np.int64)
    order = np.lexsort((ks, shards))
    return spill.encode_run(shards[order], ks[order], [records_with_keys[i][1] for i in order])


def test_merge_is_global_key_order_per_shard(tmp_path):
    rng = random.Random(0)
    items = [(rng.getrandbits(64), f"rec{i}".encode() * rng.randint(1, 50)) for i in range(3000)]
    num_shards = 4
    files = {}
    # Cut the items into runs of uneven sizes, as buckets would be.
    cuts = sorted(rng.sample(range(1, len(items)), 9))
    for n, (a, b) in enumerate(zip([0] + cuts, cuts + [len(items)])):
        data, index = _run(items[a:b], num_shards)
        path = tmp_path / f"run{n}.bin"
        path.write_bytes(data)
        files[str(path)] = index
    opener = lambda p: io.open(p, "rb")
    for shard in range(num_shards):
        segs = [(p, *idx[shard]) for p, idx in files.items() if shard in idx]
        got = list(spill.merge_segments(opener, segs, memory_budget=1 << 14))
        want = [r for k, r in sorted(items) if keys.shard_of(k, num_shards) == shard]
        assert got == want


def test_equal_keys_are_ordered_by_record_bytes_on_both_paths(tmp_path):
    """Two instances can share a 64-bit key: the order is then the records' bytes, in any run layout."""
    items = [(5, b"zz"), (5, b"aa"), (9, b"m"), (5, b"ab"), (1, b"q"), (9, b"a")]
    want = [r for _, r in sorted(items)]
    for cut in range(1, len(items)):
        segments, blobs = [], []
        for n, part in enumerate((items[:cut], items[cut:])):
            data, index = _run(part, 1)
            path = tmp_path / f"tie{cut}-{n}.bin"
            path.write_bytes(data)
            segments += [(str(path), *index[0])]
            blobs += [(blob, count) for blob, count in spill.split_run(data, index).values()]
        assert spill.merge_segments(lambda p: io.open(p, "rb"), segments) == want
        assert spill.sort_blobs(blobs) == want


def test_damaged_segment_is_an_error_naming_it(tmp_path):
    data, index = _run([(k, b"x" * k) for k in range(1, 30)], 1)
    path = tmp_path / "run.bin"
    path.write_bytes(data[:-3])
    with pytest.raises(IOError, match="run.bin@0: truncated"):
        spill.merge_segments(lambda p: io.open(p, "rb"), [(str(path), *index[0])])


def test_write_run_writes_encode_runs_bytes(tmp_path):
    rng = random.Random(3)
    items = [(rng.getrandbits(64), bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 60)))) for _ in range(3000)]
    ks = np.array([k for k, _ in items], dtype=np.uint64)
    shards = np.array([keys.shard_of(int(k), 5) for k in ks], dtype=np.int64)
    order = np.lexsort((ks, shards))
    args = (shards[order], ks[order], [items[i][1] for i in order])
    data, table = spill.encode_run(*args)
    path = tmp_path / "run.bin"
    with open(path, "wb") as f:  # a local file: vectored writes, over 1,024 parts
        assert spill.write_run(f, *args) == table
    assert path.read_bytes() == data
    buffer = io.BytesIO()  # a stream without a file descriptor
    assert spill.write_run(buffer, *args) == table and buffer.getvalue() == data
