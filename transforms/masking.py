"""Masked-LM masking (BERT 80/10/10, whole-word, ALBERT n-gram): one pure module for pipeline and trainer.

The pipeline calls it for static masking; `training/` calls the same functions for dynamic masking at load
time, so both draw from one distribution. No Beam, no TensorFlow: numpy and `random` only.
"""
import bisect
import dataclasses
import itertools
import random
from typing import List, Optional, Sequence, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    """How to choose and replace masked positions (google-research/bert and ALBERT semantics)."""

    masked_lm_prob: float = 0.15  # share of tokens (incl. [CLS]/[SEP]) to predict, rounded, >= 1
    max_predictions_per_seq: int = 20  # hard cap on predictions per sequence
    do_whole_word_mask: bool = False  # mask all pieces of a word together
    max_ngram_size: int = 1  # ALBERT n-gram masking: spans of 1..N words, P(n) ∝ 1/n
    favor_shorter_ngram: bool = True  # ALBERT: P(n) ∝ 1/n (True) or ∝ 1/(N+1-n) (False)
    mask_prob: float = 0.8  # replace by [MASK]
    random_prob: float = 0.1  # replace by a random vocabulary id (the rest keeps the token)


@dataclasses.dataclass
class MaskedInstance:
    """Result of masking one sequence."""

    input_ids: List[int]  # tokens after replacement
    positions: List[int]  # masked positions, ascending
    labels: List[int]  # original ids at those positions


def num_to_predict(seq_len: int, cfg: MaskingConfig) -> int:
    """The reference's budget: min(max_predictions, max(1, round(len * prob)))."""
    return min(cfg.max_predictions_per_seq, max(1, int(round(seq_len * cfg.masked_lm_prob))))


def candidate_words(maskable: Sequence[bool], continues_word: Sequence[bool],
                    whole_word: bool) -> List[List[int]]:
    """Groups maskable positions into candidate units: words (whole-word) or single tokens.

    As in the reference, a continuation piece joins the previous candidate even across a skipped
    [SEP]; [CLS]/[SEP] (not maskable) are never candidates.
    """
    cands: List[List[int]] = []
    for i, ok in enumerate(maskable):
        if not ok:
            continue
        if whole_word and cands and continues_word[i]:
            cands[-1].append(i)
        else:
            cands.append([i])
    return cands


def _replace(index: int, output: List[int], rng: random.Random, cfg: MaskingConfig,
             vocab_size: int, mask_id: int) -> None:
    # Same draw order as the reference: one uniform for [MASK], another for keep-vs-random.
    if rng.random() < cfg.mask_prob:
        output[index] = mask_id
    else:
        keep_share = 1.0 - cfg.mask_prob - cfg.random_prob
        keep_given_not_mask = keep_share / (1.0 - cfg.mask_prob) if cfg.mask_prob < 1.0 else 0.0
        if rng.random() < keep_given_not_mask:
            pass  # keep the original token
        else:
            output[index] = rng.randint(0, vocab_size - 1)


def _mask_words(cands: List[List[int]], budget: int, output: List[int], rng: random.Random,
                cfg: MaskingConfig, vocab_size: int, mask_id: int) -> List[int]:
    """google-research/bert: shuffle candidates, take them greedily, skipping any that overflow."""
    rng.shuffle(cands)
    chosen: List[int] = []
    for index_set in cands:
        if len(chosen) >= budget:
            break
        if len(chosen) + len(index_set) > budget:
            continue
        for index in index_set:
            _replace(index, output, rng, cfg, vocab_size, mask_id)
            chosen.append(index)
    return chosen


def ngram_probabilities(max_n: int, favor_shorter: bool) -> np.ndarray:
    """P(n) for n = 1..max_n: ∝ 1/n (ALBERT's default), or reversed (∝ 1/(max_n + 1 - n))."""
    weights = 1.0 / np.arange(1, max_n + 1)
    if not favor_shorter:
        weights = weights[::-1]
    return weights / weights.sum()


def choose_ngram_spans(cands: List[List[int]], budget: int, rng: random.Random, max_n: int,
                       favor_shorter: bool = True) -> List[Tuple[int, List[int]]]:
    """google-research/albert's n-gram choice; returns (words in the span, token positions) per chosen span.

    Every candidate word is a possible span start, visited in random order. At each start n is drawn
    from 1..max_n with P(n) (over all max_n lengths, as ALBERT does: near the end of the sequence
    the span is simply cut short by the slice), shortened one word at a time while it would overflow
    the budget, skipped if even one word overflows or if it overlaps an earlier span.
    """
    cum = list(itertools.accumulate(ngram_probabilities(max_n, favor_shorter).tolist()))
    starts = list(range(len(cands)))
    rng.shuffle(starts)
    covered = set()
    spans: List[Tuple[int, List[int]]] = []
    used = 0
    for start in starts:
        if used >= budget:
            break
        n = min(bisect.bisect_right(cum, rng.random() * cum[-1]) + 1, max_n)
        span = [i for word in cands[start:start + n] for i in word]
        while used + len(span) > budget and n > 1:
            n -= 1
            span = [i for word in cands[start:start + n] for i in word]
        if used + len(span) > budget:
            continue
        if any(i in covered for i in span):
            continue
        covered.update(span)
        used += len(span)
        spans.append((len(cands[start:start + n]), span))
    return spans


def _mask_ngrams(cands: List[List[int]], budget: int, output: List[int], rng: random.Random,
                 cfg: MaskingConfig, vocab_size: int, mask_id: int) -> List[int]:
    """google-research/albert: spans of 1..N consecutive candidate words, P(n) ∝ 1/n, shorter on overflow."""
    chosen: List[int] = []
    for _, span in choose_ngram_spans(cands, budget, rng, cfg.max_ngram_size, cfg.favor_shorter_ngram):
        for index in span:
            _replace(index, output, rng, cfg, vocab_size, mask_id)
            chosen.append(index)
    return chosen


def mask_instance(input_ids: Sequence[int], maskable: Sequence[bool], continues_word: Sequence[bool],
                  rng: random.Random, cfg: MaskingConfig, vocab_size: int, mask_id: int) -> MaskedInstance:
    """Masks one sequence.

    input_ids: token ids without padding; maskable: False at [CLS]/[SEP]; continues_word: True where a
    token continues the previous word (WordPiece '##', SentencePiece pieces without '▁').
    """
    output = list(input_ids)
    budget = num_to_predict(len(output), cfg)
    cands = candidate_words(maskable, continues_word, cfg.do_whole_word_mask)
    if cfg.max_ngram_size > 1:
        chosen = _mask_ngrams(cands, budget, output, rng, cfg, vocab_size, mask_id)
    else:
        chosen = _mask_words(cands, budget, output, rng, cfg, vocab_size, mask_id)
    chosen.sort()
    return MaskedInstance(input_ids=output, positions=chosen, labels=[int(input_ids[i]) for i in chosen])


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


_CHUNK = 1 << 15  # values per pass: 256 KB of uint64, so each pass of SplitMix64 reads what the last left in cache
_SHIFTS = (np.uint64(30), np.uint64(27), np.uint64(31))
_TOP53 = np.uint64(11)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 over a uint64 array (wrapping arithmetic): a counter-based random generator (a new array)."""
    return _splitmix_in_place(x.astype(np.uint64, copy=True))


def _splitmix_in_place(x: np.ndarray, to_unit: Optional[np.ndarray] = None) -> np.ndarray:
    """SplitMix64 of a C-contiguous uint64 array, in place, a cache-sized chunk at a time (each pass reads what
    the last left in cache: 3x faster on 10^7 values than whole-array passes). With `to_unit` (float64, same
    shape) each value's top 53 bits are also written there as a uniform [0, 1) draw."""
    flat = x.reshape(-1)
    unit = None if to_unit is None else to_unit.reshape(-1)
    tmp = np.empty(min(_CHUNK, flat.size), np.uint64)
    for lo in range(0, flat.size, _CHUNK):
        v = flat[lo:lo + _CHUNK]
        t = tmp[:len(v)]
        v += _GOLDEN
        for shift, mix in zip(_SHIFTS, (_MIX1, _MIX2, None)):
            np.right_shift(v, shift, out=t)
            v ^= t
            if mix is not None:
                v *= mix
        if unit is not None:
            np.right_shift(v, _TOP53, out=t)
            np.multiply(t, 1.0 / (1 << 53), out=unit[lo:lo + _CHUNK])  # exact: 53-bit integers, scale 2^-53
    return x


def _uniform(row_seeds: np.ndarray, stream: int, counter: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) draws keyed by (row seed, stream, counter): independent of batch composition."""
    return _uniform_from_base(_stream_base(row_seeds, stream), counter)


def _stream_base(row_seeds: np.ndarray, stream: int) -> np.ndarray:
    return _splitmix(row_seeds.astype(np.uint64) ^ np.uint64(stream * 0x100000001B3))


def _uniform_from_base(base: np.ndarray, counter: np.ndarray) -> np.ndarray:
    bits = base + counter.astype(np.uint64)
    out = np.empty(bits.shape, np.float64)
    _splitmix_in_place(bits, out)
    return out


def _row_cumsum(flags: np.ndarray) -> np.ndarray:
    """np.cumsum(flags, axis=1) of a C-ordered [N, L] bool array, as one flat running sum less each row's
    start (numpy's per-row accumulation costs about twice as much for short rows)."""
    dtype = np.int32 if flags.size < (1 << 31) else np.int64
    total = np.cumsum(flags.ravel(), dtype=dtype).reshape(flags.shape)
    if flags.shape[0] > 1 and flags.shape[1]:
        total[1:] -= total[:-1, -1:]  # numpy reads the overlapping operand as it was before the update
    return total


def mask_rows(input_ids: np.ndarray, lengths: np.ndarray, maskable: np.ndarray, continues_word: np.ndarray,
              row_seeds: np.ndarray,
              cfg: MaskingConfig, vocab_size: int, mask_id: int
              ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BERT masking of many sequences at once, vectorised over rows (the pipeline's static path).

    The same algorithm as `mask_instance` with `max_ngram_size == 1`: candidate units (words with
    do_whole_word_mask, else tokens) in a random order, taken greedily while they fit the budget
    min(max_predictions, max(1, round(len * masked_lm_prob))), each chosen token replaced 80/10/10.
    Random numbers come from a counter-based generator keyed by each row's seed, so a row's masks
    depend only on its seed, never on which rows share the batch.

    input_ids [N, L] (padded), lengths [N] (tokens before padding), maskable [N, L] (False at [CLS]/[SEP]/padding), continues_word [N, L],
    row_seeds [N] uint64. Returns (masked ids [N, L], positions [N, P], labels [N, P], weights [N, P]).
    """
    n, length = input_ids.shape
    p = cfg.max_predictions_per_seq
    positions = np.zeros((n, p), np.int64)
    labels = np.zeros((n, p), np.int64)
    weights = np.zeros((n, p), np.float32)
    out = input_ids.copy()
    if n == 0:
        return out, positions, labels, weights
    maskable = maskable.astype(bool)
    seq_len = np.asarray(lengths, dtype=np.int64)
    budget = np.minimum(p, np.maximum(1, np.round(seq_len * cfg.masked_lm_prob).astype(np.int64)))
    # Candidate units: a maskable token starts a unit unless it continues a word and some earlier
    # token of the row was a candidate (the reference appends it to the last candidate then).
    seen_before = _row_cumsum(maskable) > maskable
    joins = continues_word.astype(bool) & seen_before if cfg.do_whole_word_mask else np.zeros_like(maskable)
    starts = maskable & ~joins
    unit = _row_cumsum(starts)
    unit -= 1
    n_units = starts.sum(axis=1)
    u_max = int(n_units.max()) if n else 0
    if u_max == 0:
        return out, positions, labels, weights
    row_base = np.arange(n, dtype=np.int64)[:, None] * u_max
    maskable_at = np.flatnonzero(maskable)  # flat positions, row-major
    # Unit index in a [n, u_max] grid; unit >= 0 wherever maskable: the first maskable token starts one.
    flat_unit = unit.reshape(-1)[maskable_at] + (maskable_at // length) * u_max
    unit_len = np.bincount(flat_unit, minlength=n * u_max)
    valid_unit = np.arange(u_max)[None, :] < n_units[:, None]
    order_keys = _uniform(row_seeds[:, None], 0, np.arange(u_max, dtype=np.uint64)[None, :])
    order_keys[~valid_unit] = 2.0
    # Valid keys are distinct 53-bit draws, and the order among invalid units (all 2.0) never matters,
    # so the faster unstable sort gives the same selection everywhere. Sorted, a row's valid units come
    # first (keys < 1 < 2.0): the r-th unit in order is valid exactly when r < n_units.
    order = np.argsort(order_keys, axis=1)
    chosen_unit = np.zeros(n * u_max, bool)
    count = np.zeros(n, np.int64)
    block = 16
    for r0 in range(0, u_max, block):
        # Units taken greedily in their random order while they fit the budget; a block of 16 at a time,
        # stopping once no row can take more (most rows fill their budget within the first few blocks).
        where = row_base + order[:, r0:r0 + block]
        lens = unit_len[where]
        taken = np.zeros(where.shape, bool)
        for j in range(where.shape[1]):
            fit = (n_units > r0 + j) & (count + lens[:, j] <= budget)
            count += np.where(fit, lens[:, j], 0)
            taken[:, j] = fit
        chosen_unit[where[taken]] = True
        if not ((n_units > r0 + block) & (count < budget)).any():
            break
    chosen_at = maskable_at[chosen_unit[flat_unit]]  # row-major: positions ascending within each row
    rows, cols = np.divmod(chosen_at, length)
    # Streams 1-3 per chosen position: the per-row part of each key once per row, not once per position.
    seeds = row_seeds.astype(np.uint64)
    u1 = _uniform_from_base(_stream_base(seeds, 1)[rows], cols)
    u2 = _uniform_from_base(_stream_base(seeds, 2)[rows], cols)
    rand_ids = np.minimum((_uniform_from_base(_stream_base(seeds, 3)[rows], cols) * vocab_size).astype(np.int64),
                          vocab_size - 1)
    keep_share = 1.0 - cfg.mask_prob - cfg.random_prob
    keep_given_not_mask = keep_share / (1.0 - cfg.mask_prob) if cfg.mask_prob < 1.0 else 0.0
    originals = input_ids.reshape(-1)[chosen_at]
    replaced = np.where(u1 < cfg.mask_prob, mask_id, np.where(u2 < keep_given_not_mask, originals, rand_ids))
    out.reshape(-1)[chosen_at] = replaced
    per_row = np.bincount(rows, minlength=n)
    slot = rows * p + (np.arange(len(rows)) - np.repeat(np.cumsum(per_row) - per_row, per_row))
    positions.reshape(-1)[slot] = cols
    labels.reshape(-1)[slot] = originals
    weights.reshape(-1)[slot] = 1.0
    return out, positions, labels, weights


def mask_batch(input_ids: np.ndarray, input_mask: np.ndarray, special: np.ndarray, word_starts: np.ndarray,
               seeds: Sequence[int], cfg: MaskingConfig, vocab_size: int, mask_id: int
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Masks a padded batch (dynamic masking at load time).

    input_ids/input_mask/special/word_starts: [B, L]; special marks [CLS]/[SEP]; word_starts marks tokens
    that may start a masked unit. seeds: one per row (derive from (seed, example index, epoch)).
    Returns (masked input_ids [B, L], positions [B, P], labels [B, P], weights [B, P] float32).
    """
    if cfg.max_ngram_size == 1:
        maskable = input_mask.astype(bool) & ~special.astype(bool)
        return mask_rows(input_ids, input_mask.sum(axis=1), maskable, maskable & ~word_starts.astype(bool),
                         np.asarray(seeds, dtype=np.uint64), cfg, vocab_size, mask_id)
    batch, _ = input_ids.shape
    p = cfg.max_predictions_per_seq
    out_ids = input_ids.copy()
    positions = np.zeros((batch, p), np.int64)
    labels = np.zeros((batch, p), np.int64)
    weights = np.zeros((batch, p), np.float32)
    for row in range(batch):
        n = int(input_mask[row].sum())
        ids = input_ids[row, :n].tolist()
        result = mask_instance(ids, (~special[row, :n]).tolist(), (~word_starts[row, :n]).tolist(),
                               random.Random(int(seeds[row])), cfg, vocab_size, mask_id)
        out_ids[row, :n] = result.input_ids
        k = len(result.positions)
        positions[row, :k] = result.positions
        labels[row, :k] = result.labels
        weights[row, :k] = 1.0
    return out_ids, positions, labels, weights
