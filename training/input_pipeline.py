"""tf.data input over a dataset's manifest.json shards: validation, per-host sharding, checkpointable iterator."""
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Optional

import numpy as np

from training.model_configs import ModelConfig

STATIC_FEATURES = ("input_ids", "input_mask", "segment_ids", "masked_lm_positions", "masked_lm_ids",
                   "masked_lm_weights")
_TF = None


class DataError(ValueError):
    """The dataset does not fit the model or flags; the message says which field and both values."""


def tf_module():
    """TensorFlow for tf.data only: imported lazily, with its view of GPUs/TPUs hidden (JAX owns them).

    Its native start-up lines (absl's "All log messages before absl::InitializeLog()", oneDNN, "Could not find
    cuda drivers", "failed call to cuInit" while devices are hidden) go to file descriptor 2 whatever
    TF_CPP_MIN_LOG_LEVEL says, so they are held back while TensorFlow loads and shown only if loading fails.
    Call it first while the process has one thread (run_pretrain.main does): other threads' lines would be
    held back too."""
    global _TF  # pylint: disable=global-statement
    if _TF is None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        with _native_stderr_held():
            import tensorflow as tf  # pylint: disable=import-outside-toplevel
            try:
                tf.config.set_visible_devices([], "GPU")
                tf.config.set_visible_devices([], "TPU")
            except (RuntimeError, ValueError):
                pass  # already initialised; nothing to hide
        _TF = tf
    return _TF


@contextlib.contextmanager
def _native_stderr_held() -> Iterator[None]:
    """File descriptor 2 into a temporary file for the block; what it caught is written out if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            caught.seek(0)
            sys.stderr.write(caught.read().decode("utf-8", "replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _join(folder: str, name: str) -> str:
    if "://" in name or os.path.isabs(name):
        return name
    return folder.rstrip("/") + "/" + name if "://" in folder else os.path.join(folder, name)


def read_manifest(data_dir: str) -> Dict[str, Any]:
    """Loads DATA_DIR/manifest.json (local or gs://)."""
    tf = tf_module()
    path = _join(data_dir, "manifest.json")
    if not tf.io.gfile.exists(path):
        raise DataError(f"{path} not found: --pretrain_data must be a dataset folder built by `bertbeam build` "
                        "(manifest.json is written last, so an unfinished build has none)")
    with tf.io.gfile.GFile(path, "r") as f:
        return json.loads(f.read())


def file_sha256(path: str) -> str:
    tf = tf_module()
    with tf.io.gfile.GFile(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What the trainer needs to know about a validated dataset."""

    data_dir: str
    files: List[str]  # all shards, in manifest order
    compression: Optional[str]
    pairing: str  # nsp | sop | none
    masking: str  # static | dynamic
    max_seq_length: int
    max_predictions_per_seq: int
    num_instances: int
    manifest: Dict[str, Any]

    @property
    def with_nsp(self) -> bool:
        return self.pairing in ("nsp", "sop")


def validate(manifest: Dict[str, Any], data_dir: str, model: ModelConfig, max_seq_length: int,
             max_predictions_per_seq: int, vocab_sha256: Optional[str] = None) -> DataSpec:
    """Checks the manifest against the model and flags; raises DataError naming each mismatch."""
    problems: List[str] = []
    fmt = manifest.get("format")
    if fmt != "bertbeam.pretraining.v1":
        problems.append(f"manifest format is {fmt!r}, expected 'bertbeam.pretraining.v1'")
    masking = manifest.get("masking", "static")
    if manifest.get("max_seq_length") != max_seq_length:
        problems.append(f"--max_seq_length={max_seq_length} but the dataset has max_seq_length="
                        f"{manifest.get('max_seq_length')}")
    if masking == "static" and manifest.get("max_predictions_per_seq") != max_predictions_per_seq:
        problems.append(f"--max_predictions_per_seq={max_predictions_per_seq} but the dataset has "
                        f"max_predictions_per_seq={manifest.get('max_predictions_per_seq')}")
    if max_seq_length > model.max_position_embeddings:
        problems.append(f"--max_seq_length={max_seq_length} exceeds the model's max_position_embeddings="
                        f"{model.max_position_embeddings}")
    vocab = manifest.get("vocab") or {}
    if vocab.get("size") != model.vocab_size:
        problems.append(f"dataset vocabulary has {vocab.get('size')} tokens but the model's vocab_size is "
                        f"{model.vocab_size} (wrong --model_class or --bert_config_file?)")
    if vocab_sha256 and vocab.get("sha256") and vocab["sha256"] != vocab_sha256:
        problems.append(f"dataset vocabulary fingerprint {vocab['sha256'][:12]}... ({vocab.get('path')}) differs "
                        f"from the model's vocabulary {vocab_sha256[:12]}...: ids would mean other tokens")
    pairing = manifest.get("pairing", "nsp")
    if pairing not in ("nsp", "sop", "none"):
        problems.append(f"unknown pairing {pairing!r}")
    shards = manifest.get("shards") or []
    if not shards:
        problems.append("manifest lists no shards")
    if problems:
        raise DataError(f"{data_dir}: dataset does not fit the model/flags:\n  - " + "\n  - ".join(problems))
    files = [_join(data_dir, s["path"]) for s in shards]
    counts = (manifest.get("counts") or {}).get("train") or {}
    num = counts.get("num_instances") or sum(int(s.get("num_instances", 0)) for s in shards)
    return DataSpec(data_dir=data_dir, files=files, compression=manifest.get("compression"), pairing=pairing,
                    masking=masking, max_seq_length=max_seq_length,
                    max_predictions_per_seq=max_predictions_per_seq, num_instances=int(num), manifest=manifest)


def host_files(files: List[str], process_index: int, process_count: int) -> List[str]:
    """This host's shards (round-robin). Needs at least one shard per host."""
    if len(files) < process_count:
        raise DataError(f"{len(files)} shard(s) for {process_count} hosts: every host needs at least one "
                        "(rebuild with more --num_output_shards, ideally a multiple of the host count)")
    if len(files) % process_count:
        logging.warning("%d shards over %d hosts: hosts read unequal amounts", len(files), process_count)
    return files[process_index::process_count]


def feature_spec(spec: DataSpec) -> Dict[str, Any]:
    tf = tf_module()
    seq, preds = spec.max_seq_length, spec.max_predictions_per_seq
    out = {"input_ids": tf.io.FixedLenFeature([seq], tf.int64),
           "input_mask": tf.io.FixedLenFeature([seq], tf.int64),
           "segment_ids": tf.io.FixedLenFeature([seq], tf.int64)}
    if spec.masking == "dynamic":
        out["word_starts"] = tf.io.FixedLenFeature([seq], tf.int64)
    else:
        out["masked_lm_positions"] = tf.io.FixedLenFeature([preds], tf.int64)
        out["masked_lm_ids"] = tf.io.FixedLenFeature([preds], tf.int64)
        out["masked_lm_weights"] = tf.io.FixedLenFeature([preds], tf.float32)
    if spec.with_nsp:
        out["next_sentence_labels"] = tf.io.FixedLenFeature([1], tf.int64)
    return out


def make_dataset(spec: DataSpec, files: List[str], per_host_batch: int, seed: int, shuffle_buffer: int,
                 cycle_length: int):
    """Infinite, deterministic tf.data pipeline of parsed batches (int32/float32) for this host.

    File order is reshuffled every pass, `cycle_length` shards are interleaved, records go through a
    shuffle buffer, batches drop the remainder (static shapes), parsing is vectorised after batching.
    Every stage is checkpointable, so the iterator position can be saved with the model.
    """
    tf = tf_module()
    compression = "GZIP" if spec.compression == "gzip" else ""
    ds = tf.data.Dataset.from_tensor_slices(files)
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True).repeat()
    cycle = max(1, min(cycle_length, len(files)))
    ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type=compression,
                                                         buffer_size=8 * 1024 * 1024),
                       cycle_length=cycle, block_length=1, num_parallel_calls=cycle if cycle > 1 else None,
                       deterministic=True)
    if shuffle_buffer > 1:
        ds = ds.shuffle(shuffle_buffer, seed=seed + 1, reshuffle_each_iteration=True)
    ds = ds.batch(per_host_batch, drop_remainder=True)
    ds = ds.map(batch_parser(spec), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    options.deterministic = True
    ds = ds.with_options(options)
    return ds.prefetch(2)


def batch_parser(spec: DataSpec):
    """A tf.data map function: a batch of serialized Examples -> int32/float32 feature tensors."""
    tf = tf_module()
    features = feature_spec(spec)

    def parse(serialized):
        parsed = tf.io.parse_example(serialized, features)
        out = {}
        for name, value in parsed.items():
            out[name] = tf.cast(value, tf.float32 if value.dtype == tf.float32 else tf.int32)
        if "next_sentence_labels" in out:
            out["next_sentence_labels"] = out["next_sentence_labels"][:, 0]
        return out

    return parse


def make_sequential_dataset(spec: DataSpec, batch_size: int, max_examples: int = 0):
    """Finite, unshuffled batches for evaluation: shards in manifest order, records in file order, the first
    `max_examples` (all when <= 0); the last batch may be short."""
    tf = tf_module()
    compression = "GZIP" if spec.compression == "gzip" else ""
    ds = tf.data.TFRecordDataset(spec.files, compression_type=compression, buffer_size=8 * 1024 * 1024)
    if max_examples > 0:
        ds = ds.take(max_examples)
    return ds.batch(batch_size, drop_remainder=False).map(batch_parser(spec)).prefetch(2)


class DynamicMasker:
    """Masks dynamic-masking batches at load time with `transforms.masking` (the pipeline's own code).

    Each row's seed is derived from (random_seed, global step, host, row), so a resumed run masks the
    same way as an uninterrupted one.
    """

    def __init__(self, spec: DataSpec, max_predictions: int, seed: int, process_index: int):
        from transforms import masking  # pylint: disable=import-outside-toplevel
        m = spec.manifest
        self._masking = masking
        self.cfg = masking.MaskingConfig(masked_lm_prob=float(m.get("masked_lm_prob", 0.15)),
                                         max_predictions_per_seq=max_predictions,
                                         do_whole_word_mask=bool(m.get("do_whole_word_mask", False)),
                                         max_ngram_size=int(m.get("max_ngram_size", 1) or 1),
                                         favor_shorter_ngram=bool(m.get("favor_shorter_ngram", True)))
        special = (m.get("vocab") or {}).get("special_ids") or {}
        self.mask_id = int(special["[MASK]"])
        self.special_ids = np.array([int(special[k]) for k in ("[CLS]", "[SEP]") if k in special])
        self.vocab_size = int((m.get("vocab") or {})["size"])
        self.seed = seed
        self.process_index = process_index

    def __call__(self, batch: Dict[str, np.ndarray], step: int) -> Dict[str, np.ndarray]:
        from transforms import keys  # pylint: disable=import-outside-toplevel
        ids = batch["input_ids"]
        special = np.isin(ids, self.special_ids)
        word_starts = batch.pop("word_starts").astype(bool)
        seeds = [keys.seed64(self.seed, "dynamic_mask", step, self.process_index, row) for row in range(len(ids))]
        new_ids, pos, labels, weights = self._masking.mask_batch(
            ids, batch["input_mask"], special, word_starts, seeds, self.cfg, self.vocab_size, self.mask_id)
        out = dict(batch)
        out.update(input_ids=new_ids.astype(np.int32), masked_lm_positions=pos.astype(np.int32),
                   masked_lm_ids=labels.astype(np.int32), masked_lm_weights=weights)
        return out


class InputIterator:
    """Numpy batches for this host, with save/restore of the tf.data position (per host)."""

    def __init__(self, dataset, masker: Optional[DynamicMasker] = None):
        tf = tf_module()
        self._iterator = iter(dataset)
        self._ckpt = tf.train.Checkpoint(iterator=self._iterator)
        self._masker = masker

    def next(self, step: int) -> Dict[str, np.ndarray]:
        batch = {k: v.numpy() for k, v in next(self._iterator).items()}
        if self._masker is not None:
            batch = self._masker(batch, step)
        return batch

    def save(self, prefix: str) -> None:
        """Writes the iterator state (shuffle buffers included) to PREFIX.{index,data-*}."""
        self._ckpt.write(prefix)

    def restore(self, prefix: str) -> None:
        self._ckpt.read(prefix).assert_consumed()

