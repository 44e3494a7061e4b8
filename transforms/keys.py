"""Deterministic seeds from (random_seed, stable element key): blake2b, never hash() or arrival order."""
import hashlib
import random
from typing import Iterable, List, Sequence, Union

import numpy as np

Part = Union[str, int, bytes]
_MASK64 = (1 << 64) - 1


def _encode(parts) -> bytes:
    out = []
    for part in parts:
        if isinstance(part, bytes):
            raw = part
        else:
            raw = str(part).encode("utf-8")
        # Length-prefix every part so ("ab", "c") and ("a", "bc") never collide.
        out.append(len(raw).to_bytes(4, "little"))
        out.append(raw)
    return b"".join(out)


def seed64(*parts: Part) -> int:
    """A 64-bit integer seed from the given parts (stable across processes and machines)."""
    return int.from_bytes(hashlib.blake2b(_encode(parts), digest_size=8).digest(), "little")


def rng_for(*parts: Part) -> random.Random:
    """A `random.Random` seeded from the parts; used for the reference's sequential draws."""
    return random.Random(seed64(*parts))


def splitmix64(x: int) -> int:
    """SplitMix64 finaliser: a cheap, well-mixed 64-bit permutation (for per-instance sort keys)."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def shard_of(key: int, num_shards: int) -> int:
    """Shard index for a 64-bit key: from the high 32 bits, so shards are contiguous key ranges."""
    return ((key >> 32) * num_shards) >> 32


def splitmix64_array(x: np.ndarray) -> np.ndarray:
    """`splitmix64` over a uint64 array (wrapping arithmetic), element for element the same values."""
    x = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def shard_array(keys: np.ndarray, num_shards: int) -> np.ndarray:
    """`shard_of` over a uint64 array."""
    if num_shards >= 1 << 32:
        raise ValueError("num_shards must be below 2**32")
    return (((keys >> np.uint64(32)) * np.uint64(num_shards)) >> np.uint64(32)).astype(np.int64)


def seed64_series(prefix: Sequence[Part], lasts: Iterable[Part]) -> List[int]:
    """[seed64(*prefix, last) for last in lasts], encoding the common prefix once (per-copy seeds of a document)."""
    head = _encode(prefix)
    return [int.from_bytes(hashlib.blake2b(head + _encode((last,)), digest_size=8).digest(), "little")
            for last in lasts]
