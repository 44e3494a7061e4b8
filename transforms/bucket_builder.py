"""One bucket of documents -> serialized, shard-assigned, key-sorted training records (pure, Beam-free).

This is the whole per-element job of the pipeline: tokenize every line of the bucket in one call,
make `dupe_factor` independent copies of each document's instances (random-next documents drawn from
the bucket), mask, encode as tf.train.Example bytes, and give every record a 64-bit sort key from
(random_seed, document key, copy, index) that decides its shard and its place in the shard.
"""
import collections
import dataclasses
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from transforms import example_codec
from transforms import keys
from transforms import masking as masking_lib
from transforms.corpus_reader import RawDocument
from transforms.instances import DocumentStats, InstanceConfig, create_instances


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

    @classmethod
    def from_vocab(cls, vocab) -> "VocabInfo":
        return cls(vocab.size, vocab.cls_id, vocab.sep_id, vocab.mask_id, vocab.unk_id, vocab.continuation_mask())


@dataclasses.dataclass
class BucketResult:
    """Records sorted by (shard, key) plus counters for the manifest."""

    shard_ids: np.ndarray  # int64 [N]
    keys: np.ndarray  # uint64 [N]
    records: List[bytes]
    counts: Dict[str, int]


Tokenizer = Callable[[Sequence[str]], Tuple[np.ndarray, np.ndarray]]


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
    return names


def feature_spec(cfg: BuildConfig) -> Dict[str, Dict[str, object]]:
    """Feature dtypes and fixed lengths, as written to the manifest."""
    lengths = {"input_ids": cfg.max_seq_length, "input_mask": cfg.max_seq_length,
               "segment_ids": cfg.max_seq_length, "word_starts": cfg.max_seq_length,
               "token_boundary": cfg.max_seq_length,
               "masked_lm_positions": cfg.max_predictions_per_seq, "masked_lm_ids": cfg.max_predictions_per_seq,
               "masked_lm_weights": cfg.max_predictions_per_seq, "next_sentence_labels": 1}
    return {name: {"dtype": "float" if name == "masked_lm_weights" else "int64", "length": lengths[name]}
            for name in feature_names(cfg)}


def tokenize_documents(docs: Sequence[RawDocument], tokenize: Tokenizer, unk_id: int,
                       counts: Dict[str, int]) -> List[Tuple[RawDocument, List[List[int]]]]:
    """Tokenizes all lines of all documents in one call; drops (and counts) documents left empty."""
    lines = [line for doc in docs for line in doc.lines]
    flat, splits = tokenize(lines)
    flat_list = flat.tolist()
    bounds = splits.tolist()
    out = []
    line_index = 0
    for doc in docs:
        sentences = []
        n_unk = n_tok = 0
        for _ in doc.lines:
            start, end = bounds[line_index], bounds[line_index + 1]
            line_index += 1
            if end > start:
                sentence = flat_list[start:end]
                sentences.append(sentence)
                n_tok += end - start
                n_unk += sentence.count(unk_id)
            else:
                counts["sentences_empty_after_tokenization"] += 1
        counts["documents_read"] += 1
        if not sentences:
            counts["documents_dropped.no_tokens"] += 1
            continue
        if n_unk == n_tok:
            counts["documents_dropped.all_unknown"] += 1
            counts["tokens_dropped_all_unknown"] += n_tok
            continue
        counts["documents_used"] += 1
        counts["sentences_used"] += len(sentences)
        counts["tokens_used"] += n_tok
        counts["unknown_tokens_used"] += n_unk
        out.append((doc, sentences))
    return out


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
    exactly what `build_bucket` gives for the same documents and configuration.
    """
    counts = counts if counts is not None else collections.Counter()
    inst_cfg = cfg.instance_config()
    mask_cfg = cfg.masking_config()
    n_docs = len(docs_tokens)
    continuation = vocab.continuation

    rows_ids: List[List[int]] = []
    rows_seg_a: List[int] = []
    rows_positions: List[List[int]] = []
    rows_labels: List[List[int]] = []
    rows_next: List[int] = []
    rows_keys: List[int] = []
    stats = DocumentStats()
    for doc_index, (doc, sentences) in enumerate(docs_tokens):

        def pick_random_document(rng: random.Random, _self=doc_index):
            if n_docs < 2:
                return None
            other = rng.randint(0, n_docs - 2)
            return docs_tokens[other + 1 if other >= _self else other][1]

        for copy in range(cfg.dupe_factor):
            rng = keys.rng_for(cfg.random_seed, "instances", doc.key, copy)
            # Masks draw from their own stream: instances never depend on how many draws masking made,
            # so a dynamic-masking build holds exactly the static build's instances (a test checks it).
            mask_rng = keys.rng_for(cfg.random_seed, "masking", doc.key, copy)
            order_base = keys.seed64(cfg.random_seed, "order", doc.key, copy)
            for index, pair in enumerate(create_instances(sentences, pick_random_document, inst_cfg, rng, stats)):
                tokens = [vocab.cls_id] + pair.tokens_a + [vocab.sep_id]
                len_a = len(tokens)
                if pair.tokens_b:
                    tokens += pair.tokens_b + [vocab.sep_id]
                if cfg.masking == "static":
                    maskable = [True] * len(tokens)
                    maskable[0] = False
                    maskable[len_a - 1] = False
                    maskable[-1] = False
                    cont = continuation[tokens].tolist()
                    result = masking_lib.mask_instance(tokens, maskable, cont, mask_rng, mask_cfg, vocab.size,
                                                       vocab.mask_id)
                    rows_ids.append(result.input_ids)
                    rows_positions.append(result.positions)
                    rows_labels.append(result.labels)
                else:
                    rows_ids.append(tokens)
                rows_seg_a.append(len_a)
                rows_next.append(1 if pair.is_random_next else 0)
                rows_keys.append(keys.splitmix64(order_base + index))

    counts["instances"] += len(rows_ids)
    counts["random_next_unavailable"] += stats.random_next_unavailable
    counts["chunks_dropped_no_pair"] += stats.chunks_dropped_no_pair
    for name in ("sop_swapped", "sop_single_sentence_random", "sop_single_sentence_split", "truncated_tokens"):
        if getattr(stats, name):
            counts[name] += getattr(stats, name)
    features = _to_feature_arrays(rows_ids, rows_seg_a, rows_positions, rows_labels, rows_next, cfg, vocab)
    counts["masked_positions"] += int(sum(len(p) for p in rows_positions))
    counts["instance_tokens"] += int(sum(len(r) for r in rows_ids))
    records = example_codec.encode_examples(features)
    key_arr = np.array(rows_keys, dtype=np.uint64)
    shard_arr = np.array([keys.shard_of(k, cfg.num_shards) for k in rows_keys], dtype=np.int64)
    order = np.lexsort((key_arr, shard_arr)) if len(rows_keys) else np.zeros(0, np.int64)
    return BucketResult(shard_ids=shard_arr[order], keys=key_arr[order],
                        records=[records[i] for i in order.tolist()], counts=dict(counts))


def _to_feature_arrays(rows_ids, rows_seg_a, rows_positions, rows_labels, rows_next,
                       cfg: BuildConfig, vocab: VocabInfo) -> Dict[str, np.ndarray]:
    n, seq_len, max_pred = len(rows_ids), cfg.max_seq_length, cfg.max_predictions_per_seq
    input_ids = np.zeros((n, seq_len), np.int64)
    input_mask = np.zeros((n, seq_len), np.int64)
    segment_ids = np.zeros((n, seq_len), np.int64)
    lengths = np.fromiter((len(r) for r in rows_ids), dtype=np.int64, count=n)
    seg_a = np.array(rows_seg_a, dtype=np.int64)
    cols = np.arange(seq_len)[None, :]
    if n:
        flat = np.fromiter((t for r in rows_ids for t in r), dtype=np.int64, count=int(lengths.sum()))
        valid = cols < lengths[:, None]
        input_ids[valid] = flat
        input_mask[valid] = 1
        segment_ids[valid & (cols >= seg_a[:, None])] = 1
    features = {"input_ids": input_ids, "input_mask": input_mask, "segment_ids": segment_ids}
    if cfg.masking == "dynamic" or cfg.pairing == "sop":
        # Word starts and [CLS]/[SEP] of the unmasked tokens (a masked token hides its own kind).
        original = input_ids if cfg.masking == "dynamic" else _unmasked_ids(input_ids, rows_positions, rows_labels)
        special = ((original == vocab.cls_id) | (original == vocab.sep_id)) & (input_mask == 1)
        starts = ~vocab.continuation[original] & (input_mask == 1)
    if cfg.masking == "static":
        positions = np.zeros((n, max_pred), np.int64)
        labels = np.zeros((n, max_pred), np.int64)
        weights = np.zeros((n, max_pred), np.float32)
        if n:
            counts = np.fromiter((len(p) for p in rows_positions), dtype=np.int64, count=n)
            pcols = np.arange(max_pred)[None, :]
            pvalid = pcols < counts[:, None]
            positions[pvalid] = np.fromiter((p for r in rows_positions for p in r), np.int64, int(counts.sum()))
            labels[pvalid] = np.fromiter((p for r in rows_labels for p in r), np.int64, int(counts.sum()))
            weights[pvalid] = 1.0
        features.update(masked_lm_positions=positions, masked_lm_ids=labels, masked_lm_weights=weights)
    else:
        # [CLS]/[SEP] never start a masked unit.
        features["word_starts"] = (starts & ~special).astype(np.int64)
    if cfg.pairing != "none":
        features["next_sentence_labels"] = np.array(rows_next, dtype=np.int64).reshape(n, 1)
    if cfg.pairing == "sop":
        # ALBERT's token_boundary: 1 at [CLS]/[SEP] and at every piece that starts a word, 0 elsewhere.
        features["token_boundary"] = (starts | special).astype(np.int64)
    return features


def _unmasked_ids(input_ids: np.ndarray, rows_positions, rows_labels) -> np.ndarray:
    """input_ids with the original token put back at every masked position."""
    original = input_ids.copy()
    for row, (positions, labels) in enumerate(zip(rows_positions, rows_labels)):
        if positions:
            original[row, positions] = labels
    return original
