"""The learning rate actually applied is lr(global step): continued phases with fresh optimizer states, and
every seed config's first step measured through the optimizer (not the logged lr)."""
import json

import numpy as np
import pytest

from pipeline import plan
from test_seed_configs import CONFIG_DIR, EXPECTED_CONFIGS
from test_training import compilation_cache  # noqa: F401  (module fixture: compile once per program)

BETA = "bert/embeddings/LayerNorm/beta"


def applied_lr(optimizer_type: str, schedule, global_step: int) -> float:
    """The rate one update of a fresh optimizer state applies at `global_step`, measured on a LayerNorm bias
    (no weight decay, no trust ratio): Adam's first direction is g/(|g|+eps) = ±1, so |Δw| is the rate."""
    import jax.numpy as jnp
    from training import optimizers
    tx = optimizers.create_optimizer(optimizer_type, schedule)
    params = {"bert": {"LayerNorm": {"beta": jnp.zeros(4, jnp.float32)}}}
    grads = {"bert": {"LayerNorm": {"beta": jnp.asarray([1.0, -1.0, 1.0, -1.0], jnp.float32)}}}
    updates, _ = tx.update(grads, tx.init(params), params, global_step=global_step)
    return float(np.abs(np.asarray(updates["bert"]["LayerNorm"]["beta"], np.float64)).max()) * (1 + 1e-6)


def _cfg(name):
    return plan.load_config(str(CONFIG_DIR / f"{name}.yaml"))


# The lr the seed logged at the step where a continued phase starts (the previous phase's last log line).
SEED_LOGGED_AT_START = {"t1_mbert_step2": "0.000400", "t2_devlin_step2": "0.000010",
                        "t3_devlin_mbert_step2": "0.000002", "t4_norwegian_cased_step3": "0.000040"}


def _old_counter(name: str, configs) -> int:
    """optax's update counter at a config's first step before the fix: it counted updates since the last fresh
    optimizer state, which only a bertbeam run restored without --expect_partial carried over."""
    cfg = configs[name]
    source = str(cfg.get("init_checkpoint", ""))
    by_run = {c["run_prefix"]: n for n, c in configs.items()}
    pred = by_run.get(source[len("output/"):]) if source.startswith("output/") else None
    if pred is None or cfg.get("expect_partial") or cfg.get("init_weights"):
        return 0
    return _old_counter(pred, configs) + int(cfg.get("start_step", 0)) - int(configs[pred].get("start_step", 0))


def effective_lr_table():
    """Rows (config, start step, seed schedule lr(start), rate applied before the fix (the schedule at optax's
    own counter), rate applied now (measured through the optimizer), seed log at that step or '')."""
    from training import schedules
    configs = {name: _cfg(name) for name in sorted(EXPECTED_CONFIGS)}
    rows = []
    for name, cfg in configs.items():
        start = int(cfg.get("start_step", 0) or 0)
        fn = schedules.learning_rate_fn(cfg["learning_rate"], cfg["end_lr"], cfg["warmup_steps"],
                                        plan.config_total_steps(cfg))
        rows.append((name, start, plan.seed_learning_rate(cfg, start), float(fn(_old_counter(name, configs))),
                     applied_lr(cfg["optimizer_type"], fn, start), SEED_LOGGED_AT_START.get(name, "")))
    return rows


def test_seed_configs_first_step_applies_the_seed_rate():
    rows = effective_lr_table()
    assert len(rows) == len(EXPECTED_CONFIGS)
    wrong_before = set()
    for name, start, seed_lr, old, now, logged in rows:
        assert now == pytest.approx(seed_lr, rel=1e-5, abs=1e-12), name
        if logged:
            assert f"{now:f}" == logged, name
        if abs(old - seed_lr) > 1e-3 * seed_lr:
            wrong_before.add(name)
    # Exactly the phases the review found training at the wrong rate (optax's counter, not the global step).
    assert wrong_before == {"t1_mbert_step3", "t1_mbert_step3b", "t1_mbert_step4", "t4_norwegian_cased_step2",
                            "t4_norwegian_cased_step3"}
    by_name = {r[0]: r for r in rows}
    assert by_name["t1_mbert_step3"][3] / by_name["t1_mbert_step3"][4] == pytest.approx(6.0, rel=1e-4)


def test_optimizer_needs_the_global_step():
    from training import optimizers, schedules
    tx = optimizers.create_optimizer("lamb", schedules.learning_rate_fn(1e-3, 0.0, 0, 200))
    params = {"w": np.zeros(2, np.float32)}
    with pytest.raises(ValueError, match="global_step"):
        tx.update(params, tx.init(params), params)
    assert applied_lr("lamb", schedules.learning_rate_fn(1e-3, 0.0, 0, 200), 150) == pytest.approx(2.5e-4, rel=1e-5)
    assert applied_lr("adamw", schedules.learning_rate_fn(1e-3, 0.0, 0, 200), 150) == pytest.approx(2.5e-4, rel=1e-5)


# --- end to end: `bertbeam train` continued at step 150 of a 1e-3 -> 0 over 200 schedule ---

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from test_training import CORPUS, VOCAB, build_with_pipeline
    if not (CORPUS.exists() and VOCAB.exists()):
        pytest.skip("../shared data absent")
    return build_with_pipeline(tmp_path_factory.mktemp("lrdata") / "static")


def _flags(data, out, **extra):
    from test_training import tiny_run_argv
    return tiny_run_argv(data, out, **{"num_steps_per_epoch": 2, "init_weights": True, **extra})


def _train(argv):
    from training import config as config_lib, train
    return train.train(config_lib.build_config(argv))


def _beta(params):
    import jax
    from training import tf_checkpoint
    return np.asarray(tf_checkpoint.flatten(jax.device_get(params))[BETA], np.float64)


def test_continued_phase_applies_lr_of_the_global_step(dataset, tmp_path):
    """Phase B from step 150 of 1e-3 -> 0 over 200 steps, with a fresh optimizer state (a TF checkpoint with
    --start_step; an earlier run with --expect_partial): the first update moves LayerNorm/beta by lr(150) =
    2.5e-4 (not lr(0) = 1e-3), and the logged lr is the applied one."""
    from training import export
    p1 = _train(_flags(dataset, tmp_path / "p1"))
    assert export.main(["--checkpoint", str(tmp_path / "p1" / "t"), "--output_dir", str(tmp_path / "tf")]) == 0
    before = _beta(p1["params"])
    phase_b = dict(num_steps_per_epoch=200, init_weights=False, load_mlm_nsp_weights=True, stop_after_steps=1,
                   start_step=150)
    for label, extra in (("tf", dict(init_checkpoint=tmp_path / "tf" / "bert_model.ckpt")),
                         ("run", dict(init_checkpoint=tmp_path / "p1" / "t", expect_partial=True))):
        out = tmp_path / f"b_{label}"
        result = _train(_flags(dataset, out, **phase_b, **extra))
        assert result["step"] == 151, label
        delta = np.abs(_beta(result["params"]) - before)
        print(f"phase B from {label}: max LayerNorm/beta update {delta.max():.6e} (lr(150) = 2.5e-4, lr(0) = 1e-3)")
        assert delta.max() == pytest.approx(2.5e-4, rel=2e-3), (label, delta.max())
        assert (delta > 0.9 * 2.5e-4).mean() > 0.5, label  # |g|/(|g|+eps) ~ 1: almost every element moves lr
        logged = json.loads((out / "t" / "run_logs.json").read_text())["history"][0]
        assert logged["step"] == 151 and logged["lr"] == pytest.approx(2.5e-4, rel=1e-6)
