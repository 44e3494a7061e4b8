"""Fast `tf.train.Example` encoding for fixed-length int64/float features, byte-identical to TF's.

Builds the protobuf wire format directly (vectorised varints with numpy), producing exactly the bytes
of `tf.train.Example.SerializeToString(deterministic=True)` (map entries sorted by key), at a fraction
of the cost of building a proto per instance. A test checks equality against TensorFlow.
"""
from typing import Dict, List, Mapping, Sequence

import numpy as np

_VARINT_CACHE: List[bytes] = []


def _varint(n: int) -> bytes:
    """Protobuf varint of a non-negative int (cached for small values, used for lengths)."""
    if n < len(_VARINT_CACHE):
        return _VARINT_CACHE[n]
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_VARINT_CACHE.extend(_varint(i) for i in range(1 << 14))


def varint_rows(values: np.ndarray) -> List[bytes]:
    """Packed varint encoding of each row of a 2-D array of non-negative integers."""
    v = np.ascontiguousarray(values, dtype=np.int64)
    if v.size == 0:
        return [b""] * v.shape[0]
    if v.min() < 0:
        raise ValueError("negative values are not supported by the fast Example encoder")
    rows, cols = v.shape
    if v.max() < 0x80:
        flat = v.astype(np.uint8).tobytes()
        return [flat[r * cols:(r + 1) * cols] for r in range(rows)]
    u = v.astype(np.uint64)
    width = 1
    while width < 10 and int(u.max()) >= (1 << (7 * width)):
        width += 1
    shifts = (np.arange(width, dtype=np.uint64) * np.uint64(7))
    groups = ((u[:, :, None] >> shifts[None, None, :]) & np.uint64(0x7F)).astype(np.uint8)
    nbytes = np.ones(u.shape, dtype=np.int64)
    for k in range(1, width):
        nbytes += (u >= np.uint64(1 << (7 * k))).astype(np.int64)
    col = np.arange(width)[None, None, :]
    groups |= ((col < (nbytes[:, :, None] - 1)) * 0x80).astype(np.uint8)
    keep = col < nbytes[:, :, None]
    flat = groups[keep].tobytes()
    row_len = nbytes.sum(axis=1)
    ends = np.cumsum(row_len)
    starts = ends - row_len
    return [flat[s:e] for s, e in zip(starts.tolist(), ends.tolist())]


def _key_prefix(name: str) -> bytes:
    key = name.encode("utf-8")
    return b"\x0a" + _varint(len(key)) + key


def _int64_feature(payload: bytes) -> bytes:
    # Feature{int64_list(3): Int64List{value(1) packed}}
    inner = b"\x0a" + _varint(len(payload)) + payload
    return b"\x1a" + _varint(len(inner)) + inner


def _float_feature(payload: bytes) -> bytes:
    # Feature{float_list(2): FloatList{value(1) packed}}
    inner = b"\x0a" + _varint(len(payload)) + payload
    return b"\x12" + _varint(len(inner)) + inner


def _bytes_feature(payload: bytes) -> bytes:
    # Feature{bytes_list(1): BytesList{value(1) repeated bytes}}; payload is the BytesList body.
    return b"\x0a" + _varint(len(payload)) + payload


def _bytes_rows(arr: np.ndarray) -> List[bytes]:
    return [b"".join(b"\x0a" + _varint(len(v)) + v for v in row) for row in arr]


def encode_examples(features: Mapping[str, np.ndarray]) -> List[bytes]:
    """Serialises a batch: features maps name -> [N, len] int64, float32 or object (bytes) array;
    returns N records."""
    names = sorted(features)
    if not names:
        return []
    n = int(features[names[0]].shape[0])
    per_feature: List[Sequence[bytes]] = []
    for name in names:
        arr = features[name]
        if arr.ndim != 2 or arr.shape[0] != n:
            raise ValueError(f"feature {name!r}: expected shape [{n}, length], got {arr.shape}")
        prefix = _key_prefix(name)
        if arr.dtype == object:
            payloads = _bytes_rows(arr)
            build = _bytes_feature
        elif np.issubdtype(arr.dtype, np.floating):
            f32 = np.ascontiguousarray(arr, dtype="<f4")
            payloads = [f32[r].tobytes() for r in range(n)]
            build = _float_feature
        else:
            payloads = varint_rows(arr)
            build = _int64_feature
        entries = []
        cache: Dict[bytes, bytes] = {}
        for payload in payloads:
            entry = cache.get(payload)
            if entry is None:
                body = prefix + b"\x12" + _feature_len_prefix(build(payload))
                entry = b"\x0a" + _varint(len(body)) + body
                if len(cache) < 4096:
                    cache[payload] = entry
            entries.append(entry)
        per_feature.append(entries)
    out = []
    for row in range(n):
        features_msg = b"".join(entries[row] for entries in per_feature)
        out.append(b"\x0a" + _varint(len(features_msg)) + features_msg)
    return out


def _feature_len_prefix(feature: bytes) -> bytes:
    return _varint(len(feature)) + feature


def decode_example(record: bytes) -> Dict[str, np.ndarray]:
    """Parses one record back to numpy arrays (via TensorFlow's proto; for inspect and tests)."""
    from tensorflow.core.example import example_pb2  # pylint: disable=import-outside-toplevel

    example = example_pb2.Example.FromString(record)
    out: Dict[str, np.ndarray] = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "int64_list":
            out[name] = np.array(feature.int64_list.value, dtype=np.int64)
        elif kind == "float_list":
            out[name] = np.array(feature.float_list.value, dtype=np.float32)
        else:
            out[name] = np.array(list(feature.bytes_list.value), dtype=object)
    return out
