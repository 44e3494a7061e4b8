"""Fast unit tests of the training module: schedule, flags/config files, LAMB vs TF's rule, grad accumulation."""
import json

import numpy as np
import pytest


def test_schedule_matches_seed_runs():
    from training.schedules import learning_rate_fn
    # T1 step3: lr 24e-4 -> 0 over 12 epochs x 100k, restored at global step 1,000,000 -> 4e-4.
    f = learning_rate_fn(24e-4, 0.0, 0, 1_200_000)
    assert float(f(1_000_000)) == pytest.approx(4e-4, rel=1e-5)
    assert float(f(1_200_000)) == pytest.approx(0.0, abs=1e-12)
    # T1 step1: 50k warm-up to 4e-4, then constant (end_lr == lr).
    g = learning_rate_fn(4e-4, 4e-4, 50_000, 700_000)
    assert float(g(0)) == 0.0
    assert float(g(25_000)) == pytest.approx(2e-4, rel=1e-5)
    assert float(g(50_000)) == pytest.approx(4e-4, rel=1e-6)
    assert float(g(699_999)) == pytest.approx(4e-4, rel=1e-6)
    # Decay counts from global step 0, not from the end of warm-up (unlike optax.join_schedules).
    h = learning_rate_fn(1e-4, 0.0, 10_000, 100_000)
    assert float(h(10_000)) == pytest.approx(0.9e-4, rel=1e-5)
    assert float(h(9_999)) == pytest.approx(0.9999e-4, rel=1e-5)


def test_flags_absl_booleans_and_config_file(tmp_path):
    from training import config as config_lib
    yaml_file = tmp_path / "phase.yaml"
    yaml_file.write_text("pretrain_data: gs://b/corpus1_128\nmodel_class: bert_multi_cased\n"
                         "train_batch_size: 2760\nlearning_rate: 4e-4\nend_lr: 4e-4\nwarmup_steps: 50000\n"
                         "load_mlm_nsp_weights: true\nexpect_partial: True\ninit_weights: true\n")
    cfg = config_lib.build_config(["--config", str(yaml_file), "--train_batch_size=1024", "--noload_mlm_nsp_weights",
                                   "--expect_partial=False"])
    assert cfg.train_batch_size == 1024  # explicit flag wins over the file
    assert cfg.learning_rate == 4e-4 and cfg.warmup_steps == 50000 and cfg.model_class == "bert_multi_cased"
    assert cfg.load_mlm_nsp_weights is False and cfg.expect_partial is False and cfg.init_weights is True
    json_file = tmp_path / "c.json"
    json_file.write_text(json.dumps({"pretrain_data": "d", "model_class": "bert_base", "init_weights": True,
                                     "num_steps_per_epoch": "1e5"}))
    cfg = config_lib.build_config(["--config", str(json_file), "--init_weights", "--steps_per_loop", "50"])
    assert cfg.num_steps_per_epoch == 100000 and cfg.steps_per_loop == 50 and config_lib.total_steps(cfg) == 100000
    with pytest.raises(config_lib.ConfigError, match="unknown flag --no_such_flag"):
        config_lib.build_config(["--no_such_flag=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("pretrain_data: d\nbatch: 3\n")
    with pytest.raises(config_lib.ConfigError, match="unknown key 'batch'"):
        config_lib.build_config(["--config", str(bad)])
    with pytest.raises(config_lib.ConfigError, match="optimizer_type"):
        config_lib.build_config(["--pretrain_data=d", "--model_class=bert_base", "--optimizer_type=sgd"])


def test_lamb_matches_tf_lamb_rule():
    """Two steps of our LAMB vs a numpy transcription of tfa LAMB (exclusions from decay AND trust ratio)."""
    import jax.numpy as jnp
    from training.optimizers import lamb
    rng = np.random.default_rng(0)
    params = {"bert": {"dense": {"kernel": rng.standard_normal((4, 3)).astype(np.float32),
                                 "bias": rng.standard_normal(3).astype(np.float32)},
                       "LayerNorm": {"gamma": rng.standard_normal(3).astype(np.float32)}}}
    grads = [{"bert": {"dense": {"kernel": rng.standard_normal((4, 3)).astype(np.float32),
                                 "bias": rng.standard_normal(3).astype(np.float32)},
                       "LayerNorm": {"gamma": rng.standard_normal(3).astype(np.float32)}}} for _ in range(2)]
    lr, wd, b1, b2, eps = 0.01, 0.01, 0.9, 0.999, 1e-6
    tx = lamb(lambda s: lr, wd)
    p = {k: {kk: {kkk: jnp.asarray(v) for kkk, v in vv.items()} for kk, vv in d.items()} for k, d in params.items()}
    state = tx.init(p)
    for g in grads:
        updates, state = tx.update(g, state, p, global_step=0)
        p = {k: {kk: {kkk: p[k][kk][kkk] + updates[k][kk][kkk] for kkk in vv} for kk, vv in d.items()}
             for k, d in p.items()}
    ref = {}
    for name, w in (("kernel", params["bert"]["dense"]["kernel"]), ("bias", params["bert"]["dense"]["bias"]),
                    ("gamma", params["bert"]["LayerNorm"]["gamma"])):
        w = w.astype(np.float64)
        m = np.zeros_like(w)
        v = np.zeros_like(w)
        for t, g in enumerate(grads, start=1):
            gw = (g["bert"]["dense"][name] if name != "gamma" else g["bert"]["LayerNorm"][name]).astype(np.float64)
            m = b1 * m + (1 - b1) * gw
            v = b2 * v + (1 - b2) * gw * gw
            u = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
            excluded = name in ("bias", "gamma")
            if not excluded:
                u = u + wd * w
            ratio = 1.0
            if not excluded:
                wn, un = np.linalg.norm(w), np.linalg.norm(u)
                ratio = wn / un if wn > 0 and un > 0 else 1.0
            w = w - ratio * lr * u
        ref[name] = w
    np.testing.assert_allclose(np.asarray(p["bert"]["dense"]["kernel"]), ref["kernel"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(p["bert"]["dense"]["bias"]), ref["bias"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(p["bert"]["LayerNorm"]["gamma"]), ref["gamma"], rtol=1e-5, atol=1e-6)


def _tiny_model_and_batch(with_nsp=True, batch=8):
    import jax
    from training import model_configs, models
    cfg = model_configs.from_dict(dict(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=32, max_position_embeddings=16, hidden_dropout_prob=0.0,
                                       attention_probs_dropout_prob=0.0))
    model = models.build_model(cfg, with_nsp)
    params = models.init_params(model, jax.random.PRNGKey(0), 10, 3)
    rng = np.random.default_rng(0)
    b = {"input_ids": rng.integers(0, 50, (batch, 10)).astype(np.int32),
         "input_mask": np.ones((batch, 10), np.int32), "segment_ids": np.zeros((batch, 10), np.int32),
         "masked_lm_positions": rng.integers(0, 10, (batch, 3)).astype(np.int32),
         "masked_lm_ids": rng.integers(0, 50, (batch, 3)).astype(np.int32),
         "masked_lm_weights": np.ones((batch, 3), np.float32),
         "next_sentence_labels": rng.integers(0, 2, batch).astype(np.int32)}
    return model, params, b


def test_gradient_accumulation_matches_full_batch():
    import jax
    import optax
    from training import train
    model, params, batch = _tiny_model_and_batch()
    tx = optax.sgd(0.1)
    outs = []
    for k in (1, 4):
        step = jax.jit(train.make_train_step(model, tx, k, jax.random.PRNGKey(1), deterministic=True))
        p, _, s, sums = step(params, tx.init(params), np.int32(0), batch)
        outs.append((p, sums))
        assert int(s) == 1
    # All weights equal (1 per prediction) -> micro-batch means average to the full-batch mean.
    for a, b in zip(jax.tree.leaves(outs[0][0]), jax.tree.leaves(outs[1][0])):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert float(outs[0][1]["loss"]) == pytest.approx(float(outs[1][1]["loss"]), rel=1e-5)
    assert float(outs[1][1]["mlm_weight"]) == 24.0


def test_mlm_only_model_has_no_pooler_or_nsp_head():
    from training import tf_checkpoint
    model, params, batch = _tiny_model_and_batch(with_nsp=False)
    names = tf_checkpoint.flatten(params)
    assert not any(n.startswith("bert/pooler") or n.startswith("cls/seq_relationship") for n in names)
    out = model.apply({"params": params}, batch["input_ids"], batch["input_mask"], batch["segment_ids"],
                      batch["masked_lm_positions"], True)
    assert out["nsp_logits"] is None and out["mlm_logits"].shape == (8, 3, 50)


def test_weight_decay_mask_excludes_layernorm_and_biases():
    from training import models, model_configs, optimizers, tf_checkpoint
    import jax
    cfg = model_configs.from_dict(dict(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=8, max_position_embeddings=8))
    params = models.init_params(models.build_model(cfg, True), jax.random.PRNGKey(0), 4, 2)
    mask = tf_checkpoint.flatten(optimizers.decay_mask(params))
    assert mask["bert/encoder/layer_0/attention/self/query/kernel"]
    assert mask["bert/embeddings/word_embeddings"] and mask["cls/seq_relationship/output_weights"]
    assert not mask["bert/encoder/layer_0/attention/output/LayerNorm/gamma"]
    assert not mask["bert/encoder/layer_0/intermediate/dense/bias"]
    assert not mask["cls/predictions/output_bias"]


def test_training_never_imports_beam():
    import subprocess
    import sys
    code = ("import sys, training.run_pretrain, training.train, training.export, training.input_pipeline;"
            "from training import model_configs; model_configs.get_model_class('bert_multi_cased');"
            "import transforms.masking, transforms.keys; print('apache_beam' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "False"


def test_gelu_is_the_tanh_approximation_and_named_so():
    """hidden_act "gelu" (TF1 configs) is google-research/bert's tanh form, not the exact erf form."""
    import math
    from training import models
    x = np.linspace(-5, 5, 101).astype(np.float32)
    tanh_form = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    erf_form = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    assert models.activation("gelu") is models.gelu_tanh is models.activation("gelu_new")
    np.testing.assert_allclose(np.asarray(models.gelu_tanh(x)), tanh_form, atol=1e-6)
    np.testing.assert_allclose(np.asarray(models.gelu_exact(x)), erf_form, atol=1e-6)
    assert np.abs(tanh_form - erf_form).max() > 1e-4  # the two are distinguishable: the name matters


def test_sigterm_sets_a_flag_and_handlers_are_restored():
    import os
    import signal
    from training import preemption
    before = signal.getsignal(signal.SIGTERM)
    with preemption.StopAndSaveSignals() as signals:
        assert signals.requested is None
        os.kill(os.getpid(), signal.SIGTERM)  # delivered to the main thread; the handler only records it
        assert signals.requested == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before
    assert preemption.agree(True, False) == (True, False)  # one process: its own decisions


def test_save_clock():
    from training import preemption
    clock = preemption.SaveClock(60.0, now=1000.0)
    assert not clock.due(now=1059.9) and clock.due(now=1060.0)
    clock.saved(now=1060.0)
    assert not clock.due(now=1100.0)
    assert not preemption.SaveClock(0.0, now=0.0).due(now=1e9)  # 0 disables time-based saves
