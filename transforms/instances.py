"""Training instances from tokenized documents: BERT NSP, ALBERT SOP and MLM-only (pure, Beam-free).

A document is a list of sentences, each a list of token ids. One call makes the instances of one
(document, dupe copy); the random draws come from the `random.Random` passed in, seeded by the caller
from (random_seed, document key, copy index), so results never depend on processing order.

All three pairings share the reference's chunking: a target length (`short_seq_prob`), sentences
gathered until the chunk reaches it (or the document ends), then the chunk becomes the instance.
NSP/SOP trim a chunk longer than the sequence as the reference does (counted by reason); MLM-only
(`none`) loses nothing: what does not fit starts the next chunk. `split_long_sentences` cuts a
sentence too long for a pair into pieces at the weakest-possible boundary first (clause punctuation
such as , ; : and the Tibetan shad, then a tsheg, then a word start, then a fixed window).
"""
import bisect
import dataclasses
import operator
import random
import unicodedata
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

TokenIds = List[int]
PAIRINGS = ("nsp", "sop", "none")
SOP_SINGLE_SENTENCE_CHOICES = ("random_document", "split", "drop")


@dataclasses.dataclass(frozen=True)
class InstanceConfig:
    """Shape of the instances (the reference's flags)."""

    max_seq_length: int = 128
    short_seq_prob: float = 0.1
    pairing: str = "nsp"  # "nsp" (BERT), "sop" (ALBERT sentence order), "none" (MLM only)
    # SOP, a chunk of one sentence: "random_document" (ALBERT: B from another document, label 1),
    # "split" (cut the sentence at a random token into A and B, then swap as usual) or "drop".
    sop_single_sentence: str = "random_document"


@dataclasses.dataclass
class PairInstance:
    """Two segments and the pair label, before [CLS]/[SEP] are added and masking."""

    tokens_a: TokenIds
    tokens_b: TokenIds  # empty for pairing "none"
    is_random_next: bool  # NSP: B is from another document; SOP: A and B were swapped (label 1)
    b_from_other_document: bool = False  # B came from another document (NSP random next, SOP one-sentence)


@dataclasses.dataclass
class DocumentStats:
    """Counters of one document copy (summed into the manifest)."""

    instances: int = 0
    random_next_unavailable: int = 0  # NSP wanted a random document but the bucket had no other one
    chunks_dropped_no_pair: int = 0  # a one-sentence chunk that could not be paired
    sop_swapped: int = 0  # SOP: A and B taken from one document and swapped (label 1)
    sop_single_sentence_random: int = 0  # SOP: one-sentence chunk paired with another document (label 1)
    sop_single_sentence_split: int = 0  # SOP: one-sentence chunk cut into A and B
    truncated_tokens: int = 0  # tokens removed by truncation to max_seq_length (own and borrowed)
    # Token accounting per copy: every token of the document either reaches an instance or is lost
    # for a counted reason; tokens taken from other documents (NSP random next, SOP one-sentence pairs)
    # are counted apart.
    own_tokens_in_instances: int = 0
    borrowed_tokens_in_instances: int = 0
    lost_chunk_end_truncation: int = 0  # the reference's trim of a chunk longer than the sequence
    lost_over_long_sentence: int = 0  # the same trim when the chunk holds a sentence longer than the room
    lost_no_pair: int = 0  # a chunk that could not be paired (dropped)
    chunk_cuts: int = 0  # MLM-only: a chunk cut at its target length, the rest starting the next one

    def lost(self) -> Dict[str, int]:
        """Own tokens lost in this copy, by reason (zeros left out)."""
        out = {"chunk_end_truncation": self.lost_chunk_end_truncation,
               "over_long_sentence": self.lost_over_long_sentence, "no_pair": self.lost_no_pair}
        return {k: v for k, v in out.items() if v}


def min_seq_length(pairing: str) -> int:
    """Smallest max_seq_length that can hold one token per segment plus the special tokens."""
    return 3 if pairing == "none" else 5


def truncate_seq_pair(tokens_a: TokenIds, tokens_b: TokenIds, max_num_tokens: int, rng: random.Random) -> int:
    """Truncates the longer segment one token at a time, from the front or back at random (in place).

    Returns the number of tokens removed. With an empty tokens_b it trims tokens_a alone.
    """
    removed = max(0, len(tokens_a) + len(tokens_b) - max_num_tokens)
    if not removed:
        return 0
    # The reference removes one token at a time from the longer segment (B on a tie), from the front or
    # the back with probability 1/2 each. Which segment loses how many tokens follows from the lengths
    # alone, so count that first, draw the front/back coins in one call per segment (a binomial), and
    # slice once: the same distribution without a Python step (and an O(n) `del x[0]`) per token.
    len_a, len_b, excess = len(tokens_a), len(tokens_b), removed
    cut_a = cut_b = 0
    if len_a > len_b:
        cut_a = min(excess, len_a - len_b)
    elif len_b > len_a:
        cut_b = min(excess, len_b - len_a)
    excess -= cut_a + cut_b
    cut_b += (excess + 1) // 2
    cut_a += excess // 2
    assert cut_a < len_a or not tokens_a, "truncation would empty segment A"
    assert cut_b < len_b or not tokens_b, "truncation would empty segment B"
    for tokens, cut in ((tokens_a, cut_a), (tokens_b, cut_b)):
        if cut:
            front = bin(rng.getrandbits(cut)).count("1")
            tokens[:] = tokens[front:len(tokens) - (cut - front)]
    return removed


def _truncate_and_count(tokens_a: TokenIds, tokens_b: TokenIds, b_own: bool, sentences: Sequence[TokenIds],
                        max_num_tokens: int, rng: random.Random, stats: DocumentStats) -> None:
    """The reference's pair truncation, with the own tokens it removes counted by reason."""
    len_a, len_b = len(tokens_a), len(tokens_b)
    stats.truncated_tokens += truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
    own_lost = (len_a - len(tokens_a)) + ((len_b - len(tokens_b)) if b_own else 0)
    if own_lost:
        if max(map(len, sentences)) > max_num_tokens:
            stats.lost_over_long_sentence += own_lost
        else:
            stats.lost_chunk_end_truncation += own_lost
    stats.own_tokens_in_instances += len(tokens_a) + (len(tokens_b) if b_own else 0)
    if not b_own:
        stats.borrowed_tokens_in_instances += len(tokens_b)


def _target_length(max_num_tokens: int, short_seq_prob: float, rng: random.Random) -> int:
    # As the reference: mostly fill the sequence, sometimes a shorter target to reduce the
    # pretrain/finetune mismatch. NSP/SOP draw it once per document copy (the reference); MLM-only per chunk.
    if rng.random() < short_seq_prob:
        return rng.randint(2, max_num_tokens)
    return max_num_tokens


def _random_next_segment(random_doc: Sequence[TokenIds], target_b_length: int, rng: random.Random) -> TokenIds:
    tokens_b: TokenIds = []
    start = rng.randint(0, len(random_doc) - 1)
    for j in range(start, len(random_doc)):
        tokens_b.extend(random_doc[j])
        if len(tokens_b) >= target_b_length:
            break
    return tokens_b


def create_nsp_instances(document: Sequence[TokenIds], pick_random_document: Callable[[random.Random], Optional[Sequence[TokenIds]]],
                         cfg: InstanceConfig, rng: random.Random, stats: DocumentStats) -> List[PairInstance]:
    """BERT's `create_instances_from_document` for one document copy.

    pick_random_document(rng) returns another document of the bucket (never this one), or None when
    there is none; then the actual next segment is used if the chunk has two or more sentences, and a
    one-sentence chunk is dropped and counted.
    """
    max_num_tokens = cfg.max_seq_length - 3
    target_seq_length = _target_length(max_num_tokens, cfg.short_seq_prob, rng)
    instances: List[PairInstance] = []
    chunk: List[TokenIds] = []
    chunk_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        chunk.append(segment)
        chunk_length += len(segment)
        if i == len(document) - 1 or chunk_length >= target_seq_length:
            if chunk:
                a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                tokens_a = [t for seg in chunk[:a_end] for t in seg]
                want_random = len(chunk) == 1 or rng.random() < 0.5
                random_doc = pick_random_document(rng) if want_random else None
                if want_random and random_doc is not None:
                    is_random_next = True
                    tokens_b = _random_next_segment(random_doc, target_seq_length - len(tokens_a), rng)
                    # The segments after a_end were not used: put them back for the next chunk.
                    i -= len(chunk) - a_end
                elif len(chunk) >= 2:
                    if want_random:
                        stats.random_next_unavailable += 1
                    is_random_next = False
                    tokens_b = [t for seg in chunk[a_end:] for t in seg]
                else:
                    stats.random_next_unavailable += 1
                    stats.chunks_dropped_no_pair += 1
                    stats.lost_no_pair += chunk_length
                    chunk, chunk_length = [], 0
                    i += 1
                    continue
                used = chunk[:a_end] if is_random_next else chunk
                _truncate_and_count(tokens_a, tokens_b, not is_random_next, used, max_num_tokens, rng, stats)
                instances.append(PairInstance(tokens_a, tokens_b, is_random_next, b_from_other_document=is_random_next))
            chunk, chunk_length = [], 0
        i += 1
    stats.instances += len(instances)
    return instances


def create_sop_instances(document: Sequence[TokenIds], pick_random_document: Callable[[random.Random], Optional[Sequence[TokenIds]]],
                         cfg: InstanceConfig, rng: random.Random, stats: DocumentStats) -> List[PairInstance]:
    """ALBERT's sentence-order prediction (google-research/albert `create_instances_from_document`, SOP).

    A chunk of two or more sentences is cut at a random sentence boundary into A (first part) and B
    (the rest); with probability 0.5 the two are swapped and the label (`is_random_next`, written to
    `next_sentence_labels`) is 1, else they stay in order with label 0. So for every instance made
    from such a chunk both segments come from this document, and B precedes A exactly when the label
    is 1. Every sentence of the chunk is used, so nothing is put back.

    A chunk of a single sentence (the document's last sentence, or one sentence that reaches the
    target length alone) has no sentence boundary to cut at. `cfg.sop_single_sentence` decides:
    - "random_document" (default, ALBERT's behaviour, needed to match its statistics): A is the
      sentence, B a run of sentences from another document of the bucket, label 1. Such pairs are
      not sentence-order pairs; they are counted in `stats.sop_single_sentence_random` and flagged by
      `PairInstance.b_from_other_document`. With no other document in the bucket the chunk is dropped.
    - "split": the sentence is cut at a random token into A and B, then swapped with probability 0.5
      like any chunk (a one-token sentence is dropped). Both segments stay in this document always.
    - "drop": the chunk makes no instance (counted in `stats.chunks_dropped_no_pair`).
    """
    max_num_tokens = cfg.max_seq_length - 3
    target_seq_length = _target_length(max_num_tokens, cfg.short_seq_prob, rng)
    instances: List[PairInstance] = []
    chunk: List[TokenIds] = []
    chunk_length = 0
    for i, segment in enumerate(document):
        chunk.append(segment)
        chunk_length += len(segment)
        if i != len(document) - 1 and chunk_length < target_seq_length:
            continue
        other_document = False
        if len(chunk) >= 2:
            a_end = rng.randint(1, len(chunk) - 1)
            tokens_a = [t for seg in chunk[:a_end] for t in seg]
            tokens_b = [t for seg in chunk[a_end:] for t in seg]
        elif cfg.sop_single_sentence == "random_document":
            tokens_a = list(chunk[0])
            random_doc = pick_random_document(rng)
            if random_doc is None:
                stats.random_next_unavailable += 1
                stats.chunks_dropped_no_pair += 1
                stats.lost_no_pair += chunk_length
                chunk, chunk_length = [], 0
                continue
            tokens_b = _random_next_segment(random_doc, target_seq_length - len(tokens_a), rng)
            other_document = True
        elif cfg.sop_single_sentence == "split" and len(chunk[0]) >= 2:
            cut = rng.randint(1, len(chunk[0]) - 1)
            tokens_a, tokens_b = list(chunk[0][:cut]), list(chunk[0][cut:])
            stats.sop_single_sentence_split += 1
        else:
            stats.chunks_dropped_no_pair += 1
            stats.lost_no_pair += chunk_length
            chunk, chunk_length = [], 0
            continue
        if other_document:
            swapped = True  # ALBERT labels the random-document pair 1 without a draw
            stats.sop_single_sentence_random += 1
        else:
            swapped = rng.random() < 0.5
            if swapped:
                tokens_a, tokens_b = tokens_b, tokens_a
                stats.sop_swapped += 1
        _truncate_and_count(tokens_a, tokens_b, not other_document, chunk, max_num_tokens, rng, stats)
        instances.append(PairInstance(tokens_a, tokens_b, swapped, b_from_other_document=other_document))
        chunk, chunk_length = [], 0
    stats.instances += len(instances)
    return instances


def create_single_segment_instances(document: Sequence[TokenIds], cfg: InstanceConfig, rng: random.Random,
                                    stats: DocumentStats, breaks: Optional["TokenBreaks"] = None) -> List[PairInstance]:
    """MLM only: the reference's chunks as one segment, `[CLS] chunk [SEP]`, no pair label, nothing lost.

    The target length is max_seq_length - 2 (two special tokens), or with `short_seq_prob` a shorter one,
    drawn afresh for every chunk: the reference draws once per document, which for a 100,000-token work
    makes a whole copy short; here `short_seq_prob` is the share of short sequences, as it is meant.
    Sentences are gathered until the chunk reaches the target. A chunk longer than the sequence is not
    trimmed: it is cut at the target (moved back up to 8 tokens to a word boundary when there is one, so
    no word is cut in two) and the rest starts the next chunk, as MLM-only packers do. Every token of
    the document lands in exactly one instance, in order.
    """
    max_num_tokens = cfg.max_seq_length - 2
    target_seq_length = _target_length(max_num_tokens, cfg.short_seq_prob, rng)
    instances: List[PairInstance] = []
    chunk: TokenIds = []
    last = len(document) - 1
    for i, segment in enumerate(document):
        chunk.extend(segment)
        start = 0  # an offset, not slicing per cut: a 1M-token "sentence" must stay linear
        while len(chunk) > start and (i == last or len(chunk) - start >= target_seq_length):
            if len(chunk) - start > max_num_tokens:
                # Cut at the target (a short one with short_seq_prob), the rest goes on to the next chunk.
                cut = carry_cut(chunk, start, target_seq_length, breaks)
                stats.chunk_cuts += 1
            else:
                cut = len(chunk)
            instances.append(PairInstance(chunk[start:cut], [], False))
            start = cut
            target_seq_length = _target_length(max_num_tokens, cfg.short_seq_prob, rng)
        chunk = chunk[start:] if start else chunk
    stats.instances += len(instances)
    stats.own_tokens_in_instances += sum(len(inst.tokens_a) for inst in instances)
    return instances


# Characters that end a clause or sentence: a cut right after them is the most natural split.
CLAUSE_END_CHARS = frozenset(",;:.!?\u2026\u3001\u3002\uff0c\uff1b\uff1a\uff01\uff1f\u060c\u061b\u061f"
                             "\u0964\u0965\u0f0d\u0f0e\u0f0f\u0f10\u0f11\u0f14")
TSHEG_CHARS = frozenset("\u0f0b\u0f0c")  # Tibetan syllable delimiters


def _is_tibetan_letter(ch: str) -> bool:
    """Tibetan consonants, subjoined letters and vowel signs: a piece ending in one ends inside a syllable."""
    return "\u0f40" <= ch <= "\u0fbc"


@dataclasses.dataclass(frozen=True)
class TokenBreaks:
    """Per vocabulary id, how good a place the gap after that token is for cutting a sentence.

    Level of the gap after token x, before token y: 3 when x ends in clause punctuation (, ; : . and
    the Tibetan shad family), 2 when x ends in a tsheg or other punctuation, 1 when y starts a word
    (not a WordPiece "##" piece) and x does not end inside a Tibetan syllable, else 0.
    """

    after: np.ndarray  # int8 per id: 3, 2 or 0 from the token itself
    continues: np.ndarray  # bool per id: the token continues the previous word
    open_end: np.ndarray  # bool per id: the token ends inside a Tibetan syllable

    @classmethod
    def from_tokens(cls, tokens: Sequence[str], continuation: np.ndarray) -> "TokenBreaks":
        after = np.zeros(len(tokens), np.int8)
        open_end = np.zeros(len(tokens), bool)
        for i, tok in enumerate(tokens):
            text = tok[2:] if tok.startswith("##") else tok.lstrip("\u2581")
            if not text or (text.startswith("[") and text.endswith("]")) or (text.startswith("<") and text.endswith(">")):
                continue
            ch = text[-1]
            if ch in CLAUSE_END_CHARS:
                after[i] = 3
            elif ch in TSHEG_CHARS or unicodedata.category(ch).startswith("P"):
                after[i] = 2
            open_end[i] = _is_tibetan_letter(ch)
        return cls(after, np.asarray(continuation, bool), open_end)

    def gap_levels(self, tokens: Sequence[int]) -> np.ndarray:
        """Level of each gap: entry k is the gap after tokens[k] (len(tokens) - 1 entries)."""
        ids = np.asarray(tokens, np.int64)
        left, right = ids[:-1], ids[1:]
        word_gap = (~self.continues[right] & ~self.open_end[left]).astype(np.int8)
        return np.maximum(self.after[left], word_gap)


def _gap_levels(tokens: Sequence[int], breaks: Optional[TokenBreaks]) -> np.ndarray:
    if breaks is None:
        return np.zeros(max(0, len(tokens) - 1), np.int8)
    return breaks.gap_levels(tokens)


def carry_cut(chunk: Sequence[int], start: int, max_num_tokens: int, breaks: Optional[TokenBreaks],
              window: int = 8) -> int:
    """Where an over-full MLM-only chunk starting at `start` ends (an index into chunk): after
    max_num_tokens tokens, or up to `window` tokens earlier at the last word boundary (level >= 1),
    so the next chunk does not start inside a word."""
    hi = start + max_num_tokens
    lo = max(start + 1, hi - window)
    levels = _gap_levels(chunk[lo - 1:hi + 1], breaks)  # entry k: the gap after chunk[lo - 1 + k]
    hits = np.flatnonzero(levels >= 1)
    return lo + int(hits[-1]) if hits.size else hi


def split_long_sentence(tokens: Sequence[int], limit: int, breaks: Optional[TokenBreaks]) -> List[TokenIds]:
    """Cuts a sentence longer than `limit` into pieces of at most `limit` tokens, nothing lost.

    Each cut lies in the second half of the room left (so a piece holds at least limit // 2 tokens) at
    the gap with the highest level there (see TokenBreaks), the last such gap on a tie; with no
    boundary at all, at the fixed window. A sentence of `limit` tokens or fewer is returned whole.
    """
    tokens = list(tokens)
    if len(tokens) <= limit:
        return [tokens]
    levels = _gap_levels(tokens, breaks)
    pieces: List[TokenIds] = []
    start = 0
    half = max(1, limit // 2)
    while len(tokens) - start > limit:
        lo, hi = start + half, start + limit  # candidate cuts: piece = tokens[start:cut], lo <= cut <= hi
        window = levels[lo - 1:hi]  # gap after token cut-1
        best = window.max()
        cut = lo + int(np.flatnonzero(window == best)[-1])
        pieces.append(tokens[start:cut])
        start = cut
    pieces.append(tokens[start:])
    return pieces


def split_long_sentences(document: Sequence[TokenIds], threshold: int, limit: int, breaks: Optional[TokenBreaks]
                         ) -> Tuple[List[TokenIds], int, int]:
    """The document with every sentence longer than `threshold` cut into pieces of at most `limit` tokens
    (split_long_sentence). Returns (sentences, sentences split, pieces added)."""
    out: List[TokenIds] = []
    n_split = added = 0
    for sentence in document:
        if len(sentence) <= threshold:
            out.append(sentence)
            continue
        pieces = split_long_sentence(sentence, limit, breaks)
        out.extend(pieces)
        n_split += 1
        added += len(pieces) - 1
    return out, n_split, added


def pair_split_lengths(max_seq_length: int) -> Tuple[int, int]:
    """(threshold, piece limit) for NSP/SOP on raw text: a sentence longer than half the room of a pair
    cannot be one of its two segments whole, so it is cut into pieces of at most a quarter of the room,
    about an English sentence at seq 128 (31 tokens). Measured on Kangyur volume 33 (one work is a single
    130,000-token "sentence" without Tibetan rules) at seq 128: pieces up to half the room kept 78.8 %
    (SOP) / 85.4 % (NSP) of the tokens after the reference's chunk-end trim, a quarter 91.7 % / 94.2 %."""
    room = max_seq_length - 3
    return max(1, room // 2), max(1, room // 4)


def create_instances(document: Sequence[TokenIds], pick_random_document, cfg: InstanceConfig,
                     rng: random.Random, stats: DocumentStats,
                     breaks: Optional[TokenBreaks] = None) -> List[PairInstance]:
    """Instances of one document copy for the configured pairing (`breaks`: where MLM-only chunks may be cut)."""
    if cfg.pairing == "nsp":
        return create_nsp_instances(document, pick_random_document, cfg, rng, stats)
    if cfg.pairing == "sop":
        if cfg.sop_single_sentence not in SOP_SINGLE_SENTENCE_CHOICES:
            raise ValueError(f"sop_single_sentence={cfg.sop_single_sentence!r}: use one of "
                             f"{', '.join(SOP_SINGLE_SENTENCE_CHOICES)}")
        return create_sop_instances(document, pick_random_document, cfg, rng, stats)
    if cfg.pairing == "none":
        return create_single_segment_instances(document, cfg, rng, stats, breaks)
    raise ValueError(f"--pairing={cfg.pairing!r} is not supported (use nsp, sop or none)")


def nsp_instance_spans(starts: Sequence[int], doc_index: int, doc_starts: Sequence[Sequence[int]],
                       cfg: InstanceConfig, rng: random.Random, stats: DocumentStats,
                       out: List[Tuple[int, int, int, int, int]]) -> int:
    """`create_nsp_instances` as token spans of a bucket-wide flat token array, without token lists.

    starts: this document's sentence boundaries in the flat array (sentence k is starts[k]:starts[k+1]);
    doc_starts: every document's boundaries (the random-next pool; this one is doc_starts[doc_index]).
    Appends one (a_lo, a_hi, b_lo, b_hi, is_random_next) per instance to `out` and returns how many.
    Makes exactly the draws of `create_nsp_instances` in the same order (a test checks the instances
    and counters against it), so both give the same records: the random-document pick is the bucket's
    `rng.randint(0, n_docs - 2)` skipping this document. `rng._randbelow(n)` is what `randint(a, a + n - 1)`
    returns less `a`, without randint's argument checks (a third of the per-instance cost); it is inlined here
    as CPython's `_randbelow_with_getrandbits` computes it (bit_length, then getrandbits until below n).
    """
    random_, getrandbits = rng.random, rng.getrandbits
    max_num_tokens = cfg.max_seq_length - 3
    target = _target_length(max_num_tokens, cfg.short_seq_prob, rng)
    n_sent = len(starts) - 1
    n_docs = len(doc_starts)
    last = n_sent - 1
    made = 0
    c0 = 0  # first sentence of the current chunk
    while c0 < n_sent:
        # The chunk grows a sentence at a time until it reaches the target or the document ends.
        i = min(last, bisect.bisect_left(starts, starts[c0] + target, c0 + 1) - 1)
        c = i - c0 + 1
        if c >= 2:  # 1 + randbelow(c - 1), inlined as random.Random._randbelow_with_getrandbits draws it
            k = (c - 1).bit_length()
            r = getrandbits(k)
            while r >= c - 1:
                r = getrandbits(k)
            a_end = 1 + r
        else:
            a_end = 1
        a_lo, a_hi = starts[c0], starts[c0 + a_end]
        want_random = c == 1 or random_() < 0.5
        if want_random and n_docs >= 2:
            k = (n_docs - 1).bit_length()  # other = randbelow(n_docs - 1), inlined
            other = getrandbits(k)
            while other >= n_docs - 1:
                other = getrandbits(k)
            rd = doc_starts[other + 1 if other >= doc_index else other]
            k = (len(rd) - 1).bit_length()  # start = randbelow(len(rd) - 1), inlined
            start = getrandbits(k)
            while start >= len(rd) - 1:
                start = getrandbits(k)
            j = min(len(rd) - 2, bisect.bisect_left(rd, rd[start] + target - (a_hi - a_lo), start + 1) - 1)
            b_lo, b_hi = rd[start], rd[j + 1]
            is_random = 1
            used_end = c0 + a_end
            next_c0 = c0 + a_end  # the unused sentences start the next chunk
        elif c >= 2:
            if want_random:
                stats.random_next_unavailable += 1
            b_lo, b_hi = a_hi, starts[i + 1]
            is_random = 0
            used_end = next_c0 = i + 1
        else:
            stats.random_next_unavailable += 1
            stats.chunks_dropped_no_pair += 1
            stats.lost_no_pair += starts[i + 1] - starts[c0]
            c0 = i + 1
            continue
        len_a, len_b = a_hi - a_lo, b_hi - b_lo
        excess = len_a + len_b - max_num_tokens
        if excess > 0:
            # truncate_seq_pair: the cut of each segment follows from the lengths; the front/back coins
            # are one getrandbits per cut segment, A first.
            cut_a = cut_b = 0
            if len_a > len_b:
                cut_a = min(excess, len_a - len_b)
            elif len_b > len_a:
                cut_b = min(excess, len_b - len_a)
            rest = excess - cut_a - cut_b
            cut_b += (rest + 1) // 2
            cut_a += rest // 2
            assert (cut_a < len_a or not len_a) and (cut_b < len_b or not len_b), "truncation would empty a segment"
            if cut_a:
                front = bin(getrandbits(cut_a)).count("1")
                a_lo, a_hi = a_lo + front, a_hi - (cut_a - front)
            if cut_b:
                front = bin(getrandbits(cut_b)).count("1")
                b_lo, b_hi = b_lo + front, b_hi - (cut_b - front)
            stats.truncated_tokens += excess
            own_lost = cut_a + (0 if is_random else cut_b)
            if own_lost:
                longest = max(map(operator.sub, starts[c0 + 1:used_end + 1], starts[c0:used_end]))
                if longest > max_num_tokens:
                    stats.lost_over_long_sentence += own_lost
                else:
                    stats.lost_chunk_end_truncation += own_lost
        if is_random:
            stats.own_tokens_in_instances += a_hi - a_lo
            stats.borrowed_tokens_in_instances += b_hi - b_lo
        else:
            stats.own_tokens_in_instances += (a_hi - a_lo) + (b_hi - b_lo)
        out.append((a_lo, a_hi, b_lo, b_hi, is_random))
        made += 1
        c0 = next_c0
    stats.instances += made
    return made
