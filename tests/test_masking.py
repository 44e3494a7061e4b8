"""Masking statistics: ALBERT n-gram span lengths ∝ 1/n, whole words, budget, 80/10/10, mask_batch."""
import random

import numpy as np
import pytest

from transforms import masking
from transforms.masking import MaskingConfig, candidate_words, choose_ngram_spans, mask_instance


def _chi_square(observed, probs) -> float:
    observed = np.asarray(observed, float)
    expected = observed.sum() * np.asarray(probs, float)
    return float(((observed - expected) ** 2 / expected).sum())


# 99.9 % quantiles of chi-square with k-1 degrees of freedom (k = 2, 3, 4, 5).
CHI2_999 = {2: 10.83, 3: 13.82, 4: 16.27, 5: 18.47}


def clean_span_lengths(cands, spans, budget: int, max_n: int):
    """Lengths of the chosen spans that nothing could have cut short or rejected.

    Before a span was drawn, if the longest n-gram from its start word fits the sequence and the
    budget and touches no covered position, any drawn n would have been taken as drawn. That
    condition does not depend on the draw, so these spans follow P(n) exactly (overlaps, budget
    shortening and the sequence end distort the rest).
    """
    word_of = {p: w for w, word in enumerate(cands) for p in word}
    covered, used, lengths = set(), 0, []
    for n, span in spans:
        start = word_of[span[0]]
        longest = [p for word in cands[start:start + max_n] for p in word]
        if start + max_n <= len(cands) and used + len(longest) <= budget and not covered.intersection(longest):
            lengths.append(n)
        covered.update(span)
        used += len(span)
    return lengths


def _span_histogram(max_n: int, favor_shorter: bool, trials: int, words: int = 400, budget: int = 60):
    counts = np.zeros(max_n, int)
    cands = [[i] for i in range(words)]
    for t in range(trials):
        spans = choose_ngram_spans(cands, budget, random.Random(t), max_n, favor_shorter)
        for n in clean_span_lengths(cands, spans, budget, max_n):
            counts[n - 1] += 1
    return counts


@pytest.mark.parametrize("max_n,favor_shorter", [(3, True), (4, True), (3, False)])
def test_ngram_span_lengths_follow_one_over_n(max_n, favor_shorter):
    counts = _span_histogram(max_n, favor_shorter, trials=150)
    probs = masking.ngram_probabilities(max_n, favor_shorter)
    expected = 1.0 / np.arange(1, max_n + 1)
    expected = (expected if favor_shorter else expected[::-1]) / expected.sum()
    np.testing.assert_allclose(probs, expected)
    assert counts.sum() > 3000
    assert _chi_square(counts, probs) < CHI2_999[max_n], (counts, probs)


def test_ngram_histogram_test_can_fail():
    """The same statistic rejects uniform span lengths (so the test above has power)."""
    counts = _span_histogram(3, True, trials=150)
    assert _chi_square(counts, [1 / 3] * 3) > 100


def _words(rng: random.Random, n_words: int):
    """A sequence of words of 1-3 pieces: (continues_word flags, word id per token)."""
    cont, word_of = [], []
    for w in range(n_words):
        pieces = rng.choice([1, 1, 1, 2, 3])
        cont += [False] + [True] * (pieces - 1)
        word_of += [w] * pieces
    return cont, word_of


@pytest.mark.parametrize("max_n", [1, 3])
def test_whole_words_and_budget(max_n):
    rng = random.Random(0)
    cfg = MaskingConfig(max_predictions_per_seq=20, do_whole_word_mask=True, max_ngram_size=max_n)
    for trial in range(300):
        cont, word_of = _words(rng, rng.randint(1, 90))
        ids = [1000 + i for i in range(len(cont))]
        maskable = [True] * len(ids)
        result = mask_instance(ids, maskable, cont, random.Random(trial), cfg, vocab_size=30000, mask_id=103)
        budget = masking.num_to_predict(len(ids), cfg)
        assert len(result.positions) <= budget
        # The reference skips a word that would overflow the budget, so only then can nothing be masked.
        word_sizes = np.bincount(word_of)
        assert len(result.positions) >= 1 or word_sizes.min() > budget
        assert result.positions == sorted(set(result.positions))
        assert result.labels == [ids[p] for p in result.positions]
        masked_words = {word_of[p] for p in result.positions}
        # Every piece of a touched word is masked (whole-word masking).
        assert sorted(result.positions) == [i for i, w in enumerate(word_of) if w in masked_words]


def test_ngram_spans_are_consecutive_whole_words():
    rng = random.Random(1)
    for trial in range(200):
        cont, word_of = _words(rng, 60)
        cands = candidate_words([True] * len(cont), cont, whole_word=True)
        for n, span in choose_ngram_spans(cands, 20, random.Random(trial), 3):
            words = sorted({word_of[p] for p in span})
            assert len(words) == n and words == list(range(words[0], words[0] + n))
            assert span == [i for i, w in enumerate(word_of) if w in words]


def test_special_tokens_never_masked_and_80_10_10():
    cfg = MaskingConfig(max_predictions_per_seq=20, do_whole_word_mask=False, max_ngram_size=3)
    mask_id, n_mask, n_keep, n_rand, total = 103, 0, 0, 0, 0
    for trial in range(2000):
        ids = [101] + list(range(2000, 2060)) + [102] + list(range(3000, 3060)) + [102]
        maskable = [i not in (101, 102) for i in ids]
        result = mask_instance(ids, maskable, [False] * len(ids), random.Random(trial), cfg, 30522, mask_id)
        for p in result.positions:
            assert maskable[p]
            out = result.input_ids[p]
            n_mask += out == mask_id
            n_keep += out == ids[p]
            n_rand += out not in (mask_id, ids[p])
            total += 1
    assert total == 2000 * masking.num_to_predict(123, cfg) == 2000 * 18
    for share, expected in ((n_mask, 0.8), (n_keep, 0.1), (n_rand, 0.1)):
        assert abs(share / total - expected) < 4 * (expected * (1 - expected) / total) ** 0.5


def test_mask_batch_matches_mask_instance_and_pads():
    """mask_batch (dynamic masking) is mask_instance per row with the row's seed; padding untouched."""
    rng = random.Random(5)
    cfg = MaskingConfig(max_predictions_per_seq=8, do_whole_word_mask=True, max_ngram_size=2)
    batch, length = 6, 40
    ids = np.zeros((batch, length), np.int64)
    mask = np.zeros((batch, length), np.int64)
    special = np.zeros((batch, length), bool)
    starts = np.zeros((batch, length), bool)
    rows = []
    for r in range(batch):
        n = rng.randint(5, length)
        cont, _ = _words(rng, n)
        cont = cont[:n - 2]
        row = [101] + [rng.randint(1000, 2000) for _ in cont] + [102]
        ids[r, :len(row)] = row
        mask[r, :len(row)] = 1
        special[r, [0, len(row) - 1]] = True
        starts[r, 1:len(row) - 1] = [not c for c in cont]
        rows.append((row, cont))
    seeds = [11, 12, 13, 14, 15, 16]
    out, pos, lab, w = masking.mask_batch(ids, mask, special, starts, seeds, cfg, 30000, 103)
    for r, (row, cont) in enumerate(rows):
        expect = mask_instance(row, [False] + [True] * len(cont) + [False], [False] + cont + [False],
                               random.Random(seeds[r]), cfg, 30000, 103)
        k = len(expect.positions)
        assert out[r, :len(row)].tolist() == expect.input_ids
        assert (out[r, len(row):] == 0).all()
        assert pos[r, :k].tolist() == expect.positions and (pos[r, k:] == 0).all()
        assert lab[r, :k].tolist() == expect.labels
        assert w[r].tolist() == [1.0] * k + [0.0] * (cfg.max_predictions_per_seq - k)


def test_row_cumsum_equals_numpy():
    from transforms.masking import _row_cumsum
    rng = np.random.default_rng(5)
    for shape in [(1, 7), (9, 1), (40, 33), (0, 5), (3, 0)]:
        flags = rng.random(shape) < 0.5
        assert np.array_equal(_row_cumsum(flags), np.cumsum(flags, axis=1))
