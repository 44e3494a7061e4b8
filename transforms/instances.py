"""Training instances from tokenized documents: BERT NSP, ALBERT SOP and MLM-only (pure, Beam-free).

A document is a list of sentences, each a list of token ids. One call makes the instances of one
(document, dupe copy); the random draws come from the `random.Random` passed in, seeded by the caller
from (random_seed, document key, copy index), so results never depend on processing order.

All three pairings share the reference's chunking: a target length (`short_seq_prob`), sentences
gathered until the chunk reaches it (or the document ends), then the chunk becomes the instance.
"""
import dataclasses
import random
from typing import Callable, List, Optional, Sequence

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
    truncated_tokens: int = 0  # tokens removed by truncation to max_seq_length


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


def _target_length(max_num_tokens: int, short_seq_prob: float, rng: random.Random) -> int:
    # As the reference: mostly fill the sequence, sometimes a shorter target to reduce the
    # pretrain/finetune mismatch. Drawn once per document copy.
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
                    chunk, chunk_length = [], 0
                    i += 1
                    continue
                stats.truncated_tokens += truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
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
        stats.truncated_tokens += truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
        instances.append(PairInstance(tokens_a, tokens_b, swapped, b_from_other_document=other_document))
        chunk, chunk_length = [], 0
    stats.instances += len(instances)
    return instances


def create_single_segment_instances(document: Sequence[TokenIds], cfg: InstanceConfig, rng: random.Random,
                                    stats: DocumentStats) -> List[PairInstance]:
    """MLM only: the reference's chunks as one segment, `[CLS] chunk [SEP]`, no pair label.

    The target length is max_seq_length - 2 (two special tokens), drawn once per document copy with
    `short_seq_prob` as for pairs; sentences are gathered until the chunk reaches it, and a chunk
    longer than the sequence is trimmed one token at a time from the front or back at random, as
    the reference trims pairs. Every sentence goes into exactly one chunk.
    """
    max_num_tokens = cfg.max_seq_length - 2
    target_seq_length = _target_length(max_num_tokens, cfg.short_seq_prob, rng)
    instances: List[PairInstance] = []
    chunk: TokenIds = []
    for i, segment in enumerate(document):
        chunk.extend(segment)
        if i != len(document) - 1 and len(chunk) < target_seq_length:
            continue
        stats.truncated_tokens += truncate_seq_pair(chunk, [], max_num_tokens, rng)
        instances.append(PairInstance(chunk, [], False))
        chunk = []
    stats.instances += len(instances)
    return instances


def create_instances(document: Sequence[TokenIds], pick_random_document, cfg: InstanceConfig,
                     rng: random.Random, stats: DocumentStats) -> List[PairInstance]:
    """Instances of one document copy for the configured pairing."""
    if cfg.pairing == "nsp":
        return create_nsp_instances(document, pick_random_document, cfg, rng, stats)
    if cfg.pairing == "sop":
        if cfg.sop_single_sentence not in SOP_SINGLE_SENTENCE_CHOICES:
            raise ValueError(f"sop_single_sentence={cfg.sop_single_sentence!r}: use one of "
                             f"{', '.join(SOP_SINGLE_SENTENCE_CHOICES)}")
        return create_sop_instances(document, pick_random_document, cfg, rng, stats)
    if cfg.pairing == "none":
        return create_single_segment_instances(document, cfg, rng, stats)
    raise ValueError(f"--pairing={cfg.pairing!r} is not supported (use nsp, sop or none)")
