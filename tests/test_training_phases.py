"""Phases and exactness of the trainer: phase 2 keeps phase 1's MLM/NSP heads (README's continuation flags),
gradient accumulation equals the whole batch, a run without weights starts from random, --eval_batch_size."""
import json
import logging

import numpy as np
import pytest

from test_training import PREDS, SEQ, TINY, compilation_cache, needs_shared, tiny_run_argv, write_dataset  # noqa: F401


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from test_training import CORPUS, VOCAB
    if not (CORPUS.exists() and VOCAB.exists()):
        pytest.skip("../shared data absent")
    return write_dataset(tmp_path_factory.mktemp("phases") / "static")


def _flags(data, out, **extra):
    return tiny_run_argv(data, out, **{"num_steps_per_epoch": 3, **extra})


def _heads(params):
    import jax
    from training import tf_checkpoint
    flat = tf_checkpoint.flatten(jax.device_get(params))
    return {n: np.asarray(v) for n, v in flat.items() if n.startswith(tf_checkpoint.HEAD_PREFIX)}


def _step0(argv):
    """The parameters a run built from these flags starts from (what the first step updates)."""
    import jax
    from training import config as config_lib, train
    setup = train.build_setup(config_lib.build_config(argv))
    params, _, step, origin = train._initial_params(setup, jax.random.PRNGKey(setup.cfg.seed))
    return params, step, origin


@needs_shared
def test_phase2_starts_from_phase1_heads(dataset, tmp_path, caplog):
    """README's phase-2 recipe `--init_checkpoint=RUN --expect_partial` restores the MLM/NSP heads (google's
    run_pretraining.py restores every matching variable); --load_mlm_nsp_weights=False resets them."""
    from training import config as config_lib, train
    p1 = train.train(config_lib.build_config(_flags(dataset, tmp_path / "p1", init_weights=True)))
    p1_heads = _heads(p1["params"])
    assert p1_heads and any(n.startswith("cls/seq_relationship") for n in p1_heads)
    phase2 = dict(init_checkpoint=tmp_path / "p1" / "t", expect_partial=True, num_steps_per_epoch=6)
    with caplog.at_level(logging.INFO):
        params, step, origin = _step0(_flags(dataset, tmp_path / "p2", **phase2))
    assert step == 3 and "weights only" in origin
    assert "start from random" not in caplog.text
    heads = _heads(params)
    assert heads.keys() == p1_heads.keys()
    diff = max(float(np.abs(heads[n] - p1_heads[n]).max()) for n in heads)
    print(f"phase 2 step-0 heads vs phase 1 last: max abs diff {diff}")
    assert diff == 0.0
    # Phase 2 trains on from there: its first step moves the heads from phase 1's values.
    p2 = train.train(config_lib.build_config(_flags(dataset, tmp_path / "p2", stop_after_steps=1, **phase2)))
    assert p2["step"] == 4
    # --load_mlm_nsp_weights=False resets them explicitly (the encoder still comes from phase 1).
    caplog.clear()
    with caplog.at_level(logging.INFO):
        reset, _, _ = _step0(_flags(dataset, tmp_path / "p3", load_mlm_nsp_weights=False, **phase2))
    assert "--load_mlm_nsp_weights=False" in caplog.text
    reset_heads = _heads(reset)
    assert all(not np.array_equal(reset_heads[n], p1_heads[n]) for n in reset_heads if n.endswith("kernel")
               or n.endswith("output_weights"))


def test_encoder_only_checkpoint_warns_and_starts_heads_from_random(caplog):
    """A checkpoint without heads (a published encoder-only export): unset flag -> WARNING, random heads;
    --load_mlm_nsp_weights=True -> an error; False -> random heads, no warning."""
    import jax
    from training import model_configs, models, tf_checkpoint
    model = models.build_model(model_configs.from_dict(dict(TINY), "bert"), True)
    init = jax.device_get(models.init_params(model, jax.random.PRNGKey(0), SEQ, PREDS))
    other = tf_checkpoint.flatten(jax.device_get(models.init_params(model, jax.random.PRNGKey(1), SEQ, PREDS)))
    encoder_only = {n: v for n, v in other.items() if not n.startswith("cls/")}
    with caplog.at_level(logging.INFO):
        params, report = tf_checkpoint.load_into_params(init, encoder_only, None, "enc.ckpt")
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "start from random" in r.getMessage()]
    assert warned and "enc.ckpt" in warned[0].getMessage()
    assert report["random_heads"] and not any(n.startswith("cls/") for n in report["loaded"])
    flat = tf_checkpoint.flatten(params)
    np.testing.assert_array_equal(flat["bert/embeddings/word_embeddings"], other["bert/embeddings/word_embeddings"])
    with pytest.raises(tf_checkpoint.CheckpointError, match="lacks head variables"):
        tf_checkpoint.load_into_params(init, encoder_only, True, "enc.ckpt")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _, report = tf_checkpoint.load_into_params(init, other, False, "full.ckpt")
    assert report["random_heads"] and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # With the heads present and the flag unset, they are loaded.
    params, report = tf_checkpoint.load_into_params(init, other, None, "full.ckpt")
    assert not report["random_heads"]
    flat = tf_checkpoint.flatten(params)
    for n in other:
        np.testing.assert_array_equal(flat[n], other[n])


def _random_batch(n, vocab, seed=0):
    """n examples with 1..PREDS masked positions each (unequal weights per example, as real data has)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(SEQ // 4, SEQ + 1, n)
    mask = (np.arange(SEQ)[None, :] < lengths[:, None]).astype(np.int32)
    k = rng.integers(1, PREDS + 1, n)
    weights = (np.arange(PREDS)[None, :] < k[:, None]).astype(np.float32)
    positions = np.stack([np.sort(rng.choice(np.arange(1, l), PREDS, replace=False)) for l in lengths])
    return {"input_ids": rng.integers(0, vocab, (n, SEQ)).astype(np.int32) * mask,
            "input_mask": mask, "segment_ids": (np.arange(SEQ)[None, :] >= lengths[:, None] // 2).astype(np.int32)
            * mask, "masked_lm_positions": (positions * weights).astype(np.int32),
            "masked_lm_ids": (rng.integers(0, vocab, (n, PREDS)) * weights).astype(np.int32),
            "masked_lm_weights": weights, "next_sentence_labels": rng.integers(0, 2, n).astype(np.int32)}


@pytest.mark.parametrize("optimizer_type", ["lamb", "adamw"])
def test_grad_accumulation_equals_the_whole_batch(optimizer_type):
    """--grad_accum_steps=k: one step equals the unaccumulated step (f32, atol 1e-6) with micro-batches of
    unequal Σ masked_lm_weights: the MLM loss is normalised by the whole batch's weights, NSP by its count."""
    import jax
    from training import model_configs, models, optimizers, schedules, train
    model = models.build_model(model_configs.from_dict(dict(TINY, vocab_size=512), "bert"), True)
    params = jax.device_get(models.init_params(model, jax.random.PRNGKey(0), SEQ, PREDS))
    tx = optimizers.create_optimizer(optimizer_type, schedules.learning_rate_fn(1e-3, 0.0, 0, 10), 0.01)
    batch = _random_batch(8, 512)
    out = {}
    for k in (1, 2, 4):
        step = jax.jit(train.make_train_step(model, tx, k, jax.random.PRNGKey(1), deterministic=True))
        new, _, _, sums = step(params, tx.init(params), np.int32(0), batch)
        out[k] = (jax.device_get(new), jax.device_get(sums))
    for k in (2, 4):
        diff = max(float(np.abs(a - b).max()) for a, b in zip(jax.tree.leaves(out[1][0]), jax.tree.leaves(out[k][0])))
        print(f"{optimizer_type}: grad_accum_steps={k} vs 1: max abs param diff {diff:.3e}")
        assert diff <= 1e-6, (k, diff)
        for key in ("loss", "lm_example_loss", "next_sentence_loss", "mlm_weight", "mlm_correct", "nsp_count"):
            assert float(out[k][1][key]) == pytest.approx(float(out[1][1][key]), rel=1e-5, abs=1e-6), key


@needs_shared
def test_no_init_checkpoint_starts_from_random(dataset, tmp_path, capsys):
    """README: without --init_checkpoint the run starts from random weights, as run_pretraining.py does (it
    stopped after loading with "no weights to start from"). A named checkpoint that does not exist stops in
    build_setup, before the dataset, the model or the optimizer are built."""
    import time
    from training import config as config_lib, run_pretrain, train
    cfg = config_lib.build_config(_flags(dataset, tmp_path / "r", num_steps_per_epoch=1))
    assert not cfg.init_weights and not cfg.init_checkpoint
    setup = train.build_setup(cfg)
    assert setup.cfg.init_weights
    result = train.train(cfg)
    assert result["step"] == 1 and "random" in result["origin"]
    assert np.isfinite(result["metrics"]["loss"])
    # The same through the command line (bertbeam flags only, no run_pretraining.py flag to imply it).
    capsys.readouterr()
    assert run_pretrain.main(["--quiet"] + _flags(dataset, tmp_path / "cli", num_steps_per_epoch=1)) == 0
    assert "stopped at step 1" in capsys.readouterr().out
    start = time.time()
    with pytest.raises(config_lib.ConfigError, match="--init_checkpoint .*nowhere.*no such"):
        train.train(config_lib.build_config(_flags(dataset, tmp_path / "x", init_checkpoint=tmp_path / "nowhere")))
    assert time.time() - start < 1.0


@needs_shared
def test_eval_batch_size_is_honoured_with_run_pretraining_flags(dataset, tmp_path, monkeypatch, capsys):
    """--eval_batch_size among run_pretraining.py flags reaches the in-training evaluation (it was consumed as
    "ignored (no evaluation loop)" and the evaluation ran at batch 8)."""
    from training import config as config_lib, evaluate, run_pretrain, run_pretraining_flags
    argv, notes = run_pretraining_flags.translate([f"--input_file={dataset}/*.tfrecord", "--num_train_steps=2",
                                                   f"--eval_data={dataset}", "--eval_batch_size", "5",
                                                   "--bert_config_file=x.json"])
    assert "--eval_batch_size" in argv and not any("eval_batch_size" in n for n in notes)
    assert config_lib.build_config(argv).eval_batch_size == 5
    sizes = []

    class Spy(evaluate.Evaluator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            sizes.append(self.batch_size)

        def batches(self):
            for batch, n in super().batches():
                sizes.append(len(batch["input_ids"]))
                yield batch, n

    monkeypatch.setattr(evaluate, "Evaluator", Spy)
    cfg_file = tmp_path / "tiny_bert_config.json"
    cfg_file.write_text(json.dumps(TINY))
    assert run_pretrain.main(["--quiet", f"--input_file={dataset}/*.tfrecord", f"--bert_config_file={cfg_file}",
                              f"--output_dir={tmp_path / 'out'}", "--num_train_steps=2", "--num_warmup_steps=0",
                              "--train_batch_size=8", f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PREDS}",
                              "--do_train", f"--eval_data={dataset}", "--eval_batch_size=5", "--max_eval_examples=12",
                              "--shuffle_buffer=16"]) == 0
    assert "(12 examples)" in capsys.readouterr().out
    assert sizes and sizes[0] == 5 and set(sizes[1:]) == {5}, sizes
