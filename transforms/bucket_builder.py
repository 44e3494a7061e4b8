"""One bucket of documents -> serialized, shard-assigned, key-sorted training records (pure, Beam-free).

This is the whole per-element job of the pipeline: tokenize every line of the bucket in one call,
make `dupe_factor` independent copies of each document's instances (random-next documents drawn from
the bucket), mask, encode as tf.train.Example bytes, and give every record a 64-bit sort key from
(random_seed, document key, copy, index) that decides its shard and its place in the shard.
"""
import collections
import collections.abc
import dataclasses
import itertools
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from transforms import example_codec
from transforms import keys
from transforms import masking as masking_lib
from transforms.corpus_reader import RawDocument
from transforms.instances import (DocumentStats, InstanceConfig, TokenBreaks, create_instances,
                                  nsp_instance_spans, pair_split_lengths, split_long_sentences)


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """Everything that shapes the records (hashable, picklable; goes into the manifest)."""

    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    short_seq_prob: float = 0.1
    dupe_factor: int = 10
    random_seed: int = 12345
    do_whole_word_mask: bool = False
    max_ngram_size: int = 1
    favor_shorter_ngram: bool = True
    pairing: str = "nsp"
    masking: str = "static"  # "static" or "dynamic" (mask at load time)
    num_shards: int = 1
    sop_single_sentence: str = "random_document"  # see instances.create_sop_instances
    write_document_ids: bool = False  # add a `document_id` bytes feature (jsonl --id_field, or the key)
    # Raw text / jsonl: NSP/SOP split a sentence too long for a pair into pieces instead of trimming it
    # (bert-format input keeps the reference's behaviour, byte for byte).
    split_long_sentences: bool = False

    def instance_config(self) -> InstanceConfig:
        return InstanceConfig(self.max_seq_length, self.short_seq_prob, self.pairing, self.sop_single_sentence)

    def masking_config(self) -> masking_lib.MaskingConfig:
        return masking_lib.MaskingConfig(masked_lm_prob=self.masked_lm_prob,
                                     max_predictions_per_seq=self.max_predictions_per_seq,
                                     do_whole_word_mask=self.do_whole_word_mask,
                                     max_ngram_size=self.max_ngram_size,
                                     favor_shorter_ngram=self.favor_shorter_ngram)


@dataclasses.dataclass(frozen=True)
class VocabInfo:
    """What instance building needs from the vocabulary (ids taken from the file, never assumed)."""

    size: int
    cls_id: int
    sep_id: int
    mask_id: int
    unk_id: int
    continuation: np.ndarray  # bool per id: piece continues a word
    breaks: Optional[TokenBreaks] = None  # where a sentence or an MLM-only chunk is best cut

    @classmethod
    def from_vocab(cls, vocab) -> "VocabInfo":
        continuation = vocab.continuation_mask()
        return cls(vocab.size, vocab.cls_id, vocab.sep_id, vocab.mask_id, vocab.unk_id, continuation,
                   TokenBreaks.from_tokens(vocab.tokens, continuation))


@dataclasses.dataclass
class BucketResult:
    """Records sorted by (shard, key) plus counters for the manifest."""

    shard_ids: np.ndarray  # int64 [N]
    keys: np.ndarray  # uint64 [N]
    records: List[bytes]
    counts: Dict[str, int]


Tokenizer = Callable[[Sequence[str]], Tuple[np.ndarray, np.ndarray]]
# Token cells ([rows, seq] entries) padded, masked and encoded together (see build_tokenized_bucket): a pass's
# arrays take ~95 bytes per cell, masking and encoding included (tracemalloc), so 262,144 cells (2,048 rows at
# seq 128, 512 at seq 512) keep a pass near 24 MB at any sequence length; a fixed 4,096 rows needed 48 MB at
# seq 128 and 4x that at 512. CPU-s unchanged at seq 128 (en_books_dev x20, six interleaved runs each: 4.25 vs
# 4.17 in one process, 4.78 vs 4.82 with two workers, within the noise); a Dataflow machine runs one process per
# vCPU against one shared L3 cache.
CELLS_PER_PASS = 262_144


def feature_names(cfg: BuildConfig) -> List[str]:
    """The features written for a configuration, in google-research/bert's schema."""
    names = ["input_ids", "input_mask", "segment_ids"]
    if cfg.masking == "static":
        names += ["masked_lm_positions", "masked_lm_ids", "masked_lm_weights"]
    else:
        names += ["word_starts"]
    if cfg.pairing != "none":
        names.append("next_sentence_labels")
    if cfg.pairing == "sop":
        # google-research/albert writes it (run_pretraining.py parses it with --masked_lm_budget).
        names.append("token_boundary")
    if cfg.write_document_ids:
        names.append("document_id")  # ignored by run_pretraining.py's parser (not in its spec)
    return names


def feature_spec(cfg: BuildConfig) -> Dict[str, Dict[str, object]]:
    """Feature dtypes and fixed lengths, as written to the manifest."""
    lengths = {"input_ids": cfg.max_seq_length, "input_mask": cfg.max_seq_length,
               "segment_ids": cfg.max_seq_length, "word_starts": cfg.max_seq_length,
               "token_boundary": cfg.max_seq_length,
               "masked_lm_positions": cfg.max_predictions_per_seq, "masked_lm_ids": cfg.max_predictions_per_seq,
               "masked_lm_weights": cfg.max_predictions_per_seq, "next_sentence_labels": 1, "document_id": 1}
    dtypes = {"masked_lm_weights": "float", "document_id": "bytes"}
    return {name: {"dtype": dtypes.get(name, "int64"), "length": lengths[name]} for name in feature_names(cfg)}


class TokenizedDocuments(collections.abc.Sequence):
    """A bucket's documents, tokenized: all token ids in one flat array and each document's sentence
    boundaries in it (sentence k of document d is flat[starts[d][k]:starts[d][k + 1]]). As a sequence it
    holds (document, sentences as lists of ids) pairs, the lists made on first use: NSP builds from the flat
    array and boundaries alone, so a bucket's tokens are never copied into a list per sentence there."""

    def __init__(self, docs: Sequence[RawDocument], flat: Optional[np.ndarray], starts: List[List[int]],
                 sentences: Optional[List[List[List[int]]]] = None):
        self.docs = list(docs)
        self._flat = flat
        self.starts = starts
        self._sentences = sentences

    @property
    def flat(self) -> np.ndarray:
        if self._flat is None:
            self._flat = np.fromiter(itertools.chain.from_iterable(itertools.chain.from_iterable(self._sentences)),
                                     dtype=np.int64, count=self.starts[-1][-1] if self.starts else 0)
        return self._flat

    @classmethod
    def from_lists(cls, docs_tokens: Sequence[Tuple[RawDocument, List[List[int]]]]) -> "TokenizedDocuments":
        """From (document, sentences) pairs (tests, and anything that edits sentences, e.g. splitting)."""
        if isinstance(docs_tokens, TokenizedDocuments):
            return docs_tokens
        starts: List[List[int]] = []
        total = 0
        for _, sentences in docs_tokens:
            doc_starts = list(itertools.accumulate(map(len, sentences), initial=total))
            starts.append(doc_starts)
            total = doc_starts[-1]
        return cls([d for d, _ in docs_tokens], None, starts, [s for _, s in docs_tokens])

    def __len__(self) -> int:
        return len(self.docs)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return self.docs[index], self.sentences()[index]

    def sentences(self) -> List[List[List[int]]]:
        if self._sentences is None:
            flat_list = self.flat.tolist()
            self._sentences = [[flat_list[a:b] for a, b in zip(doc_starts, doc_starts[1:])]
                               for doc_starts in self.starts]
        return self._sentences


def _add(counts: Dict[str, int], name: str, value: int, when: bool) -> None:
    """counts[name] += value where the per-document loop this replaces touched the key (it may add 0)."""
    if when:
        counts[name] += int(value)


def tokenize_documents(docs: Sequence[RawDocument], tokenize: Tokenizer, unk_id: int,
                       counts: Dict[str, int]) -> TokenizedDocuments:
    """Tokenizes all lines of all documents in one call; drops (and counts) documents left empty, or
    holding nothing but unknown tokens. Counting is vectorised over the bucket's lines."""
    lines = [line for doc in docs for line in doc.lines]
    flat, splits = tokenize(lines)
    flat = np.asarray(flat)
    splits = np.asarray(splits, dtype=np.int64)
    line_edges = np.zeros(len(docs) + 1, np.int64)
    np.cumsum([len(doc.lines) for doc in docs], out=line_edges[1:])
    first, last = line_edges[:-1], line_edges[1:]
    nonempty = np.diff(splits) > 0
    nonempty_before = np.zeros(len(lines) + 1, np.int64)
    np.cumsum(nonempty, out=nonempty_before[1:])
    unknown_before = np.zeros(len(flat) + 1, np.int64)
    np.cumsum(flat == unk_id, out=unknown_before[1:])
    n_tok = splits[last] - splits[first]
    n_sent = nonempty_before[last] - nonempty_before[first]
    n_unk = unknown_before[splits[last]] - unknown_before[splits[first]]
    no_tokens = n_sent == 0
    all_unknown = ~no_tokens & (n_unk == n_tok)
    used = ~no_tokens & ~all_unknown
    n_docs = len(docs)
    _add(counts, "sentences_empty_after_tokenization", len(lines) - int(nonempty_before[-1]),
         len(lines) > int(nonempty_before[-1]))
    _add(counts, "documents_read", n_docs, n_docs > 0)
    _add(counts, "sentences_read", len(lines), n_docs > 0)
    _add(counts, "tokens_read", n_tok.sum(), n_docs > 0)
    _add(counts, "documents_dropped.no_tokens", no_tokens.sum(), no_tokens.any())
    _add(counts, "documents_dropped.all_unknown", all_unknown.sum(), all_unknown.any())
    _add(counts, "tokens_dropped.all_unknown", n_tok[all_unknown].sum(), all_unknown.any())
    _add(counts, "sentences_dropped.all_unknown", n_sent[all_unknown].sum(), all_unknown.any())
    for name, values in (("documents_used", used), ("sentences_used", n_sent[used]), ("tokens_used", n_tok[used]),
                         ("unknown_tokens_used", n_unk[used])):
        _add(counts, name, values.sum(), used.any())
    # Sentence k of a document starts at its k-th non-empty line; the last one ends where its lines end.
    sentence_starts = splits[:-1][nonempty].tolist()
    lo_list, hi_list, end_list = (nonempty_before[first].tolist(), nonempty_before[last].tolist(),
                                  splits[last].tolist())
    kept = np.flatnonzero(used).tolist()
    starts = [sentence_starts[lo_list[d]:hi_list[d]] + [end_list[d]] for d in kept]
    return TokenizedDocuments([docs[d] for d in kept], flat, starts)


def build_bucket(docs: Sequence[RawDocument], cfg: BuildConfig, vocab: VocabInfo, tokenize: Tokenizer,
                 counts: Optional[Dict[str, int]] = None) -> BucketResult:
    """Builds every record of one bucket of documents."""
    counts = counts if counts is not None else collections.Counter()
    docs_tokens = tokenize_documents(docs, tokenize, vocab.unk_id, counts)
    return build_tokenized_bucket(docs_tokens, cfg, vocab, counts)


def build_tokenized_bucket(docs_tokens: Sequence[Tuple[RawDocument, List[List[int]]]], cfg: BuildConfig,
                           vocab: VocabInfo, counts: Optional[Dict[str, int]] = None) -> BucketResult:
    """Builds the records of an already tokenized bucket (`tokenize_documents`' output).

    Several configurations (e.g. seq 128 and seq 512) can be built from one tokenization; each gives
    exactly what `build_bucket` gives for the same documents and configuration. Instance creation is
    sequential Python (the reference's algorithm; for NSP as (start, end) spans of the bucket's flat token
    array, `instances.nsp_instance_spans`, so no token list is built per instance); masking, padding, keys
    and encoding are vectorised over the whole bucket.
    """
    counts = counts if counts is not None else collections.Counter()
    docs_tokens = TokenizedDocuments.from_lists(docs_tokens)
    inst_cfg = cfg.instance_config()
    n_docs = len(docs_tokens)
    cls_id, sep_id = vocab.cls_id, vocab.sep_id

    rows_ids: List[List[int]] = []
    rows_seg_a: List[int] = []
    rows_next: List[int] = []
    rows_doc: List[int] = []
    group_sizes: List[int] = []  # instances per (document, copy)
    order_bases: List[int] = []
    mask_bases: List[int] = []
    stats = DocumentStats()
    breaks = vocab.breaks if vocab.breaks is not None else TokenBreaks(
        np.zeros(vocab.size, np.int8), np.asarray(vocab.continuation, bool), np.zeros(vocab.size, bool))
    if cfg.split_long_sentences and cfg.pairing != "none":
        # Once per document, before the copies: every copy (and every random-next draw) sees the pieces.
        threshold, limit = pair_split_lengths(cfg.max_seq_length)
        split_docs = []
        for doc, sentences in docs_tokens:
            pieces, n_split, added = split_long_sentences(sentences, threshold, limit, breaks)
            if n_split:
                counts["sentences_split"] += n_split
                counts["sentence_pieces_added"] += added
            split_docs.append((doc, pieces))
        docs_tokens = TokenizedDocuments.from_lists(split_docs)
    spans: List[Tuple[int, int, int, int, int]] = []
    flat_tokens: Optional[np.ndarray] = None
    if cfg.pairing == "nsp":
        # NSP instances are spans of the bucket's flat token array: no per-sentence or per-instance token lists.
        flat_tokens, doc_starts = docs_tokens.flat, docs_tokens.starts
    for doc_index, doc in enumerate(docs_tokens.docs):
        starts = docs_tokens.starts[doc_index]
        counts["token_copies_offered"] += (starts[-1] - starts[0]) * cfg.dupe_factor
        sentences = None if flat_tokens is not None else docs_tokens.sentences()[doc_index]

        def pick_random_document(rng: random.Random, _self=doc_index):
            if n_docs < 2:
                return None
            other = rng.randint(0, n_docs - 2)
            return docs_tokens.sentences()[other + 1 if other >= _self else other]

        copies = range(cfg.dupe_factor)
        instance_seeds = keys.seed64_series((cfg.random_seed, "instances", doc.key), copies)
        order_seeds = keys.seed64_series((cfg.random_seed, "order", doc.key), copies)
        mask_seeds_doc = keys.seed64_series((cfg.random_seed, "masking", doc.key), copies)
        for copy in copies:
            rng = random.Random(instance_seeds[copy])  # keys.rng_for(seed, "instances", doc.key, copy)
            if flat_tokens is not None:
                made = nsp_instance_spans(starts, doc_index, doc_starts, inst_cfg, rng, stats, spans)
            else:
                pairs = create_instances(sentences, pick_random_document, inst_cfg, rng, stats, breaks)
                for pair in pairs:
                    tokens = [cls_id] + pair.tokens_a + [sep_id]
                    rows_seg_a.append(len(tokens))
                    if pair.tokens_b:
                        tokens += pair.tokens_b
                        tokens.append(sep_id)
                    rows_ids.append(tokens)
                    rows_next.append(1 if pair.is_random_next else 0)
                made = len(pairs)
            if made:
                group_sizes.append(made)
                rows_doc.extend([doc_index] * made)
                # Order and masks draw from their own keyed streams: instances never depend on masking,
                # so a dynamic-masking build holds exactly the static build's instances.
                order_bases.append(order_seeds[copy])  # keys.seed64(seed, "order", doc.key, copy)
                mask_bases.append(mask_seeds_doc[copy])

    n = len(spans) if flat_tokens is not None else len(rows_ids)
    counts["instances"] += n
    counts["random_next_unavailable"] += stats.random_next_unavailable
    counts["chunks_dropped_no_pair"] += stats.chunks_dropped_no_pair
    for name in ("sop_swapped", "sop_single_sentence_random", "sop_single_sentence_split", "truncated_tokens",
                 "chunk_cuts"):
        if getattr(stats, name):
            counts[name] += getattr(stats, name)
    # Token copies (each document's tokens once per dupe copy): offered = own in instances + lost by reason.
    counts["token_copies_in_instances"] += stats.own_tokens_in_instances
    counts["token_copies_borrowed"] += stats.borrowed_tokens_in_instances
    for reason, lost in stats.lost().items():
        counts["token_copies_lost." + reason] += lost
    order_keys = _row_keys(order_bases, group_sizes)
    mask_seeds = _row_keys(mask_bases, group_sizes, mix=False)
    doc_ids = None
    if cfg.write_document_ids:
        doc_ids = [(docs_tokens.docs[d].doc_id or docs_tokens.docs[d].key) for d in rows_doc]
    records: List[bytes] = []
    # Rows are padded, masked and encoded a slice at a time: every step is row by row, so the bytes are those
    # of one pass over the bucket, while the [rows, seq] arrays stay a few MB (cache-sized, and a process's
    # memory does not grow with dupe_factor x bucket size).
    rows_per_pass = max(1, CELLS_PER_PASS // cfg.max_seq_length)
    # The bucket's tokens with [CLS] and [SEP] appended, which every pass's spans gather from: made once.
    tokens_cls_sep = (None if flat_tokens is None
                      else np.concatenate([flat_tokens, np.array([cls_id, sep_id], np.int64)]))
    for lo in range(0, max(n, 1), rows_per_pass):
        hi = min(n, lo + rows_per_pass)
        if tokens_cls_sep is not None:
            packed = _pack_spans(spans[lo:hi], tokens_cls_sep, cfg.max_seq_length)
        else:
            packed = _pack_rows(rows_ids[lo:hi], rows_seg_a[lo:hi], rows_next[lo:hi], cfg.max_seq_length)
        features = _feature_arrays(*packed, mask_seeds[lo:hi], None if doc_ids is None else doc_ids[lo:hi], cfg,
                                   vocab)
        if "masked_lm_weights" in features:
            counts["masked_positions"] += int(features["masked_lm_weights"].sum())
        counts["instance_tokens"] += int(features["input_mask"].sum())
        records.extend(example_codec.encode_examples(features))
    shard_arr = keys.shard_array(order_keys, cfg.num_shards)
    order = np.lexsort((order_keys, shard_arr)) if n else np.zeros(0, np.int64)
    return BucketResult(shard_ids=shard_arr[order], keys=order_keys[order],
                        records=[records[i] for i in order.tolist()], counts=dict(counts))


def _row_keys(bases: List[int], sizes: List[int], mix: bool = True) -> np.ndarray:
    """Per-instance uint64 keys: base of its (document, copy) plus its index there, mixed for sort keys."""
    if not sizes:
        return np.zeros(0, np.uint64)
    sizes_arr = np.array(sizes, dtype=np.int64)
    within = np.arange(int(sizes_arr.sum()), dtype=np.int64) - np.repeat(np.cumsum(sizes_arr) - sizes_arr, sizes_arr)
    raw = np.repeat(np.array(bases, dtype=np.uint64), sizes_arr) + within.astype(np.uint64)
    return keys.splitmix64_array(raw) if mix else raw


def _pack_spans(spans: List[Tuple[int, int, int, int, int]], ext: np.ndarray,
                seq_len: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`[CLS] A [SEP] B [SEP]` rows gathered from span tuples: (input_ids [N, seq_len], lengths, seg_a, next).
    `ext` is the bucket's flat tokens followed by [CLS] and [SEP]; spans index its tokens."""
    n = len(spans)
    arr = np.array(spans, dtype=np.int64).reshape(n, 5)
    len_a, len_b = arr[:, 1] - arr[:, 0], arr[:, 3] - arr[:, 2]
    cls_at, sep_at = np.full(n, len(ext) - 2, np.int64), np.full(n, len(ext) - 1, np.int64)
    seg_start = np.stack([cls_at, arr[:, 0], sep_at, arr[:, 2], sep_at], axis=1).ravel()
    seg_len = np.stack([np.ones(n, np.int64), len_a, np.ones(n, np.int64), len_b, (len_b > 0).astype(np.int64)],
                       axis=1).ravel()
    out_start = np.cumsum(seg_len) - seg_len
    index = np.arange(int(seg_len.sum()), dtype=np.int64) + np.repeat(seg_start - out_start, seg_len)
    lengths = len_a + len_b + 2 + (len_b > 0)
    input_ids = np.zeros((n, seq_len), np.int64)
    input_ids[np.arange(seq_len)[None, :] < lengths[:, None]] = ext[index]
    return input_ids, lengths, len_a + 2, arr[:, 4].copy()


def _pack_rows(rows_ids: List[List[int]], rows_seg_a: List[int], rows_next: List[int], seq_len: int
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same from per-instance token lists (SOP, MLM-only)."""
    n = len(rows_ids)
    input_ids = np.zeros((n, seq_len), np.int64)
    lengths = np.fromiter(map(len, rows_ids), dtype=np.int64, count=n)
    if n:
        input_ids[np.arange(seq_len)[None, :] < lengths[:, None]] = np.fromiter(
            itertools.chain.from_iterable(rows_ids), dtype=np.int64, count=int(lengths.sum()))
    return (input_ids, lengths, np.array(rows_seg_a, dtype=np.int64).reshape(n),
            np.array(rows_next, dtype=np.int64).reshape(n))


def _feature_arrays(input_ids: np.ndarray, lengths: np.ndarray, seg_a: np.ndarray, next_labels: np.ndarray,
                    mask_seeds: np.ndarray, doc_ids: Optional[List[str]], cfg: BuildConfig,
                    vocab: VocabInfo) -> Dict[str, np.ndarray]:
    n, seq_len = input_ids.shape
    cols = np.arange(seq_len)[None, :]
    valid = cols < lengths[:, None]
    input_mask = valid.astype(np.int64)
    segment_ids = (valid & (cols >= seg_a[:, None])).astype(np.int64)
    # [CLS] at 0, [SEP] closing segment A and (with a pair) the sequence: never masked.
    special = valid & ((cols == 0) | (cols == seg_a[:, None] - 1) | (cols == lengths[:, None] - 1))
    starts = valid & ~vocab.continuation[input_ids]
    features = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}
    if cfg.masking == "static":
        mask_cfg = cfg.masking_config()
        # The trainer's dynamic masking calls the same function: one distribution for both.
        masked, positions, labels, weights = masking_lib.mask_batch(
            input_ids, input_mask, special, starts & ~special, mask_seeds, mask_cfg, vocab.size, vocab.mask_id)
        features.update(input_ids=masked, masked_lm_positions=positions, masked_lm_ids=labels,
                        masked_lm_weights=weights)
    else:
        features["word_starts"] = (starts & ~special).astype(np.int64)
    if cfg.pairing != "none":
        features["next_sentence_labels"] = next_labels.reshape(n, 1)
    if cfg.pairing == "sop":
        # ALBERT's token_boundary: 1 at [CLS]/[SEP] and at every piece that starts a word, 0 elsewhere.
        features["token_boundary"] = (starts | special).astype(np.int64)
    if doc_ids is not None:
        features["document_id"] = np.array([[d.encode("utf-8")] for d in doc_ids], dtype=object).reshape(n, 1)
    return features
