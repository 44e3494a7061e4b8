"""Training on real shared text (CPU, tiny BERT): loss falls, resume == uninterrupted, schedule, flags, errors."""
import hashlib
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "data" / "corpora" / "en_books_dev.txt"
VOCAB = SHARED / "data" / "vocab" / "bert_base_uncased" / "vocab.txt"
SEQ, PREDS = 64, 10
TINY = {"vocab_size": 30522, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 128, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1, "max_position_embeddings": 128, "type_vocab_size": 2,
        "initializer_range": 0.02}

needs_shared = pytest.mark.skipif(not (CORPUS.exists() and VOCAB.exists()), reason="../shared data absent")


def _documents(max_lines: int = 1500):
    """Real text from the shared corpus, WordPiece-tokenized with BERT's uncased vocabulary."""
    from tokenizers import BertWordPieceTokenizer
    tok = BertWordPieceTokenizer(str(VOCAB), lowercase=True)
    lines = [ln.strip() for ln in CORPUS.read_text(encoding="utf-8").splitlines() if ln.strip()][:max_lines]
    encoded = tok.encode_batch(lines, add_special_tokens=False)
    sents = [e.ids for e in encoded if e.ids]
    return [sents[i:i + 25] for i in range(0, len(sents), 25)], tok


def write_dataset(out_dir: Path, dynamic: bool = False, num_shards: int = 2, seed: int = 7) -> Path:
    """A small google-research/bert-format dataset (DESIGN.md schema) + manifest.json, written here."""
    import tensorflow as tf
    from transforms import masking
    docs, tok = _documents()
    vocab = tok.get_vocab()
    cls_id, sep_id, mask_id = vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"]
    inv = {i: t for t, i in vocab.items()}
    rng = random.Random(seed)
    mcfg = masking.MaskingConfig(max_predictions_per_seq=PREDS)
    records = []
    budget = SEQ - 3
    for d, doc in enumerate(docs):
        flat = [t for s in doc for t in s]
        for start in range(0, len(flat) - budget, budget):
            chunk = flat[start:start + budget]
            cut = rng.randint(1, len(chunk) - 1)
            a, b = chunk[:cut], chunk[cut:]
            label = 0
            if rng.random() < 0.5:  # random next "sentence" from another document
                other = [t for s in docs[(d + 1 + rng.randrange(len(docs) - 1)) % len(docs)] for t in s]
                b = other[: len(b)]
                label = 1
            ids = [cls_id] + a + [sep_id] + b + [sep_id]
            seg = [0] * (len(a) + 2) + [1] * (len(b) + 1)
            n = len(ids)
            pad = SEQ - n
            feats = {"input_mask": [1] * n + [0] * pad, "segment_ids": seg + [0] * pad,
                     "next_sentence_labels": [label]}
            if dynamic:
                starts = [0 if (t in (cls_id, sep_id) or inv[t].startswith("##")) else 1 for t in ids]
                feats.update(input_ids=ids + [0] * pad, word_starts=starts + [0] * pad)
            else:
                maskable = [t not in (cls_id, sep_id) for t in ids]
                cont = [inv[t].startswith("##") for t in ids]
                m = masking.mask_instance(ids, maskable, cont, rng, mcfg, len(vocab), mask_id)
                k = len(m.positions)
                feats.update(input_ids=m.input_ids + [0] * pad,
                             masked_lm_positions=m.positions + [0] * (PREDS - k),
                             masked_lm_ids=m.labels + [0] * (PREDS - k))
            ex = {name: tf.train.Feature(int64_list=tf.train.Int64List(value=v)) for name, v in feats.items()}
            if not dynamic:
                ex["masked_lm_weights"] = tf.train.Feature(float_list=tf.train.FloatList(
                    value=[1.0] * k + [0.0] * (PREDS - k)))
            records.append(tf.train.Example(features=tf.train.Features(feature=ex)).SerializeToString())
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for s in range(num_shards):
        name = f"train-{s:05d}-of-{num_shards:05d}.tfrecord"
        part = records[s::num_shards]
        with tf.io.TFRecordWriter(str(out_dir / name)) as w:
            for r in part:
                w.write(r)
        shards.append({"path": name, "num_instances": len(part), "bytes": (out_dir / name).stat().st_size})
    manifest = {"format": "bertbeam.pretraining.v1", "counts": {"train": {"num_documents": len(docs),
                                                                          "num_instances": len(records)}},
                "max_seq_length": SEQ, "max_predictions_per_seq": PREDS, "dupe_factor": 1, "short_seq_prob": 0.0,
                "random_seed": seed, "masked_lm_prob": 0.15, "do_whole_word_mask": False, "do_lower_case": True,
                "pairing": "nsp", "masking": "dynamic" if dynamic else "static", "max_ngram_size": 1,
                "vocab": {"path": str(VOCAB), "sha256": hashlib.sha256(VOCAB.read_bytes()).hexdigest(),
                          "size": len(vocab), "kind": "wordpiece",
                          "special_ids": {k: vocab[k] for k in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}},
                "compression": None, "shards": shards}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return out_dir


def build_with_pipeline(out_dir: Path, *extra: str) -> Path:
    """Records built by the project's Beam pipeline (`bertbeam build`) from a slice of real shared text."""
    from pipeline import build
    corpus = out_dir.parent / (out_dir.name + "_corpus.txt")
    lines = CORPUS.read_text(encoding="utf-8").splitlines()[:2500]
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    build.run([f"--input_file={corpus}", f"--vocab_file={VOCAB}", f"--output_dir={out_dir}", "--do_lower_case",
               f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDS}", "--num_shards=2",
               "--dupe_factor=2", "--random_seed=3", *extra])
    return out_dir


def _pipeline_available() -> bool:
    try:
        import pipeline.build  # noqa: F401
        return True
    except ImportError:
        return False


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    if not (CORPUS.exists() and VOCAB.exists()):
        pytest.skip("../shared data absent")
    root = tmp_path_factory.mktemp("data")
    if _pipeline_available():
        return build_with_pipeline(root / "static")
    return write_dataset(root / "static")  # before the pipeline existed: the schema written by hand


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
    """The runs in this module compile the same programs: a persistent cache avoids recompiling them."""
    import jax
    keys = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_persistent_cache_min_entry_size_bytes")
    old = {k: getattr(jax.config, k) for k in keys}
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    yield
    for k, v in old.items():
        jax.config.update(k, v)


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "bert_config.json"
    path.write_text(json.dumps(TINY))
    return path


def _flags(data, cfg_file, out, **extra):
    flags = {"pretrain_data": str(data), "bert_config_file": str(cfg_file), "output_dir": str(out),
             "train_batch_size": 16, "max_seq_length": SEQ, "max_predictions_per_seq": PREDS,
             "num_epochs": 1, "num_steps_per_epoch": 40, "steps_per_loop": 10, "learning_rate": 2e-3,
             "end_lr": 0.0, "warmup_steps": 5, "optimizer_type": "lamb", "init_weights": True,
             "shuffle_buffer": 64, "run_prefix": "t"}
    flags.update(extra)
    return [f"--{k}={v}" for k, v in flags.items()]


def tiny_run_argv(data, out, **extra):
    """`bertbeam train` flags for a few steps of the tiny BERT at batch 8, its config written beside `out`."""
    cfg_file = out.parent / "tiny_bert_config.json"
    cfg_file.parent.mkdir(parents=True, exist_ok=True)
    cfg_file.write_text(json.dumps(TINY))
    flags = {"pretrain_data": data, "bert_config_file": cfg_file, "output_dir": out, "train_batch_size": 8,
             "max_seq_length": SEQ, "max_predictions_per_seq": PREDS, "steps_per_loop": 1, "learning_rate": 1e-3,
             "end_lr": 0.0, "warmup_steps": 0, "shuffle_buffer": 16, "run_prefix": "t"}
    flags.update(extra)
    return [f"--{k}={v}" for k, v in flags.items()]


def _run(argv):
    from training import config as config_lib, train
    return train.train(config_lib.build_config(argv))


@needs_shared
def test_mlm_loss_falls_and_logs(dataset, tiny_config, tmp_path):
    result = _run(_flags(dataset, tiny_config, tmp_path, optimizer_type="adamw", learning_rate=5e-3))
    logs = json.loads((tmp_path / "t" / "run_logs.json").read_text())
    hist = logs["history"]
    assert [h["step"] for h in hist] == [10, 20, 30, 40]
    first, last = hist[0]["lm_example_loss"], hist[-1]["lm_example_loss"]
    assert last < first - 1.5, (first, last)
    for name in ("loss", "masked_lm_accuracy", "lm_example_loss", "next_sentence_accuracy",
                 "next_sentence_loss", "lr", "examples_per_second"):
        assert name in hist[-1]
    assert abs(hist[-1]["loss"] - hist[-1]["lm_example_loss"] - hist[-1]["next_sentence_loss"]) < 1e-4
    assert result["step"] == 40
    assert json.loads((tmp_path / "t" / "bert_config.json").read_text())["hidden_size"] == 64
    events = list((tmp_path / "t" / "summaries" / "train").glob("events.out.tfevents*"))
    assert events


@needs_shared
def test_resume_equals_uninterrupted(dataset, tiny_config, tmp_path):
    import jax
    extra = dict(num_steps_per_epoch=8, steps_per_loop=2, checkpoint_every_loops=2, shuffle_buffer=32)
    full = _run(_flags(dataset, tiny_config, tmp_path / "full", **extra))
    # "Preempted" after 5 steps: the last checkpoint is step 4 (step 5 is lost), then a relaunch resumes.
    part = _run(_flags(dataset, tiny_config, tmp_path / "cut", stop_after_steps=5, **extra))
    assert part["step"] == 5
    import shutil
    shutil.rmtree(tmp_path / "cut" / "t" / "checkpoints" / "5")
    shutil.rmtree(tmp_path / "cut" / "t" / "data_state" / "5")
    resumed = _run(_flags(dataset, tiny_config, tmp_path / "cut", **extra))
    assert resumed["origin"].startswith("resumed") and "step 4" in resumed["origin"]
    assert resumed["step"] == 8
    a = jax.tree.leaves(jax.device_get(full["params"]))
    b = jax.tree.leaves(jax.device_get(resumed["params"]))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-6)
    assert full["metrics"]["loss"] == pytest.approx(resumed["metrics"]["loss"], abs=1e-5)


@needs_shared
def test_dynamic_masking_mlm_only(tmp_path, tiny_config):
    """A `--masking dynamic --pairing none` dataset: masked at load time by transforms.masking; no NSP head."""
    if _pipeline_available():
        data = build_with_pipeline(tmp_path / "dyn", "--masking=dynamic", "--pairing=none")
    else:
        pytest.skip("pipeline.build not available")
    from training import config as config_lib, input_pipeline, train
    cfg = config_lib.build_config(_flags(data, tiny_config, tmp_path, num_steps_per_epoch=4, steps_per_loop=2,
                                         optimizer_type="adamw", learning_rate=5e-3))
    setup = train.build_setup(cfg)
    assert setup.spec.masking == "dynamic" and not setup.spec.with_nsp
    ds = input_pipeline.make_dataset(setup.spec, setup.spec.files, 8, 1, 16, 4)
    masker = input_pipeline.DynamicMasker(setup.spec, PREDS, 1, 0)
    it = input_pipeline.InputIterator(ds, masker)
    batch = it.next(0)
    assert "word_starts" not in batch and batch["masked_lm_positions"].shape == (8, PREDS)
    w = batch["masked_lm_weights"]
    assert (w.sum(1) >= 1).all()
    rows, cols = np.nonzero(w)
    masked_ids = batch["input_ids"][rows, batch["masked_lm_positions"][rows, cols]]
    assert (masked_ids == 103).mean() > 0.5  # ~80% become [MASK]
    again = input_pipeline.InputIterator(input_pipeline.make_dataset(setup.spec, setup.spec.files, 8, 1, 16, 4),
                                         input_pipeline.DynamicMasker(setup.spec, PREDS, 1, 0)).next(0)
    np.testing.assert_array_equal(again["input_ids"], batch["input_ids"])  # same seed+step -> same masks
    result = train.train(cfg)
    assert "next_sentence_loss" not in result["metrics"]
    assert np.isfinite(result["metrics"]["lm_example_loss"])
    assert not any(k.startswith("cls/seq_relationship") for k in
                   __import__("training.tf_checkpoint", fromlist=["flatten"]).flatten(result["params"]))


@needs_shared
def test_dataset_mismatch_errors_are_clear(dataset, tiny_config, tmp_path):
    from training import config as config_lib, input_pipeline, train
    with pytest.raises(input_pipeline.DataError, match="--max_seq_length=128 but the dataset has max_seq_length=64"):
        train.build_setup(config_lib.build_config(_flags(dataset, tiny_config, tmp_path, max_seq_length=128)))
    other = tmp_path / "bert_config.json"
    other.write_text(json.dumps(dict(TINY, vocab_size=119547)))
    with pytest.raises(input_pipeline.DataError, match="vocab_size is 119547"):
        train.build_setup(config_lib.build_config(_flags(dataset, other, tmp_path)))
    cased = SHARED / "data" / "vocab" / "bert_base_cased" / "vocab.txt"
    with pytest.raises(input_pipeline.DataError, match="fingerprint"):
        train.build_setup(config_lib.build_config(_flags(dataset, tiny_config, tmp_path, vocab_file=cased)))
    # Without any --init_* flag the run starts from random weights (tests/test_training_phases.py).


@needs_shared
def test_next_phase_from_exported_tf_and_from_run(dataset, tiny_config, tmp_path):
    """Phase 1 -> `bertbeam export` -> phase 2 initialised from the TF checkpoint (and from the run itself):
    weights arrive intact (lr 0 keeps them) and the global step continues for the schedule."""
    import jax
    from training import export
    p1 = _run(_flags(dataset, tiny_config, tmp_path / "p1", num_steps_per_epoch=4, steps_per_loop=2))
    assert export.main(["--checkpoint", str(tmp_path / "p1" / "t"), "--output_dir", str(tmp_path / "tf")]) == 0
    common = dict(num_steps_per_epoch=6, steps_per_loop=2, learning_rate=0.0, warmup_steps=0, init_weights=False,
                  load_mlm_nsp_weights=True)
    from_tf = _run(_flags(dataset, tiny_config, tmp_path / "p2", init_checkpoint=tmp_path / "tf" / "bert_model.ckpt",
                          start_step=4, **common))
    assert "TF checkpoint" in from_tf["origin"] and "--start_step=4" in from_tf["origin"]
    from_run = _run(_flags(dataset, tiny_config, tmp_path / "p3", init_checkpoint=tmp_path / "p1" / "t",
                           expect_partial=True, **common))
    assert "at step 4" in from_run["origin"] and "weights only" in from_run["origin"]
    for result in (from_tf, from_run):
        assert result["step"] == 6
        for x, y in zip(jax.tree.leaves(jax.device_get(p1["params"])), jax.tree.leaves(jax.device_get(result["params"]))):
            np.testing.assert_array_equal(x, y)
    logs = json.loads((tmp_path / "p3" / "t" / "run_logs.json").read_text())
    assert [h["step"] for h in logs["history"]] == [6]
