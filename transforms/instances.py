"""Training instances from tokenized documents, with google-research/bert's semantics (pure, Beam-free).

A document is a list of sentences, each a list of token ids. One call makes the instances of one
(document, dupe copy); the random draws come from the `random.Random` passed in, seeded by the caller
from (random_seed, document key, copy index), so results never depend on processing order.
"""
import dataclasses
import random
from typing import Callable, List, Optional, Sequence

TokenIds = List[int]


@dataclasses.dataclass(frozen=True)
class InstanceConfig:
    """Shape of the instances (the reference's flags)."""

    max_seq_length: int = 128
    short_seq_prob: float = 0.1
    pairing: str = "nsp"  # "nsp" (BERT), "sop" (ALBERT sentence order), "none" (MLM only)


@dataclasses.dataclass
class PairInstance:
    """Two segments and the pair label, before [CLS]/[SEP] are added and masking."""

    tokens_a: TokenIds
    tokens_b: TokenIds  # empty for pairing "none"
    is_random_next: bool  # NSP: B is from another document; SOP: A and B were swapped


@dataclasses.dataclass
class DocumentStats:
    """Counters of one document copy (summed into the manifest)."""

    instances: int = 0
    random_next_unavailable: int = 0  # NSP wanted a random document but the bucket had no other one
    chunks_dropped_no_pair: int = 0  # a one-sentence chunk that could not be paired


def min_seq_length(pairing: str) -> int:
    """Smallest max_seq_length that can hold one token per segment plus the special tokens."""
    return 3 if pairing == "none" else 5


def truncate_seq_pair(tokens_a: TokenIds, tokens_b: TokenIds, max_num_tokens: int, rng: random.Random) -> None:
    """Truncates the longer segment one token at a time, from the front or back at random (in place)."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        trunc = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        assert len(trunc) >= 1
        if rng.random() < 0.5:
            del trunc[0]
        else:
            trunc.pop()


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
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
                instances.append(PairInstance(tokens_a, tokens_b, is_random_next))
            chunk, chunk_length = [], 0
        i += 1
    stats.instances += len(instances)
    return instances


def create_instances(document: Sequence[TokenIds], pick_random_document, cfg: InstanceConfig,
                     rng: random.Random, stats: DocumentStats) -> List[PairInstance]:
    """Instances of one document copy for the configured pairing."""
    if cfg.pairing == "nsp":
        return create_nsp_instances(document, pick_random_document, cfg, rng, stats)
    raise ValueError(f"--pairing={cfg.pairing!r} is not supported (use nsp, sop or none)")
