"""Keyed seeds: the batched form gives exactly the one-at-a-time seeds."""
from transforms import keys


def test_seed64_series_equals_seed64():
    for prefix in [(12345, "order", "corpus.txt@0"), (), ("é", b"\x00", 7)]:
        assert keys.seed64_series(prefix, range(4)) == [keys.seed64(*prefix, c) for c in range(4)]
