"""A trainer you can trust: relative paths from another cwd, SIGTERM saves and exits 0, a SIGKILL in the middle
of an Orbax save resumes to the same parameters, time-based saves, evaluation during training."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from test_training import PREDS, SEQ, TINY, build_with_pipeline, compilation_cache, needs_shared  # noqa: F401

pytestmark = needs_shared
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return build_with_pipeline(tmp_path_factory.mktemp("robustdata") / "static")


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "bert_config.json"
    path.write_text(json.dumps(TINY))
    return path


def _flags(**flags):
    base = {"train_batch_size": 8, "max_seq_length": SEQ, "max_predictions_per_seq": PREDS, "num_steps_per_epoch": 6,
            "steps_per_loop": 2, "learning_rate": 2e-3, "warmup_steps": 2, "init_weights": True,
            "shuffle_buffer": 16, "run_prefix": "t"}
    base.update(flags)
    return [f"--{k}={v}" for k, v in base.items()]


def _leaves(params):
    import jax
    from training import tf_checkpoint
    return tf_checkpoint.flatten(jax.device_get(params))


def test_relative_paths_default_output_dir_time_saves_and_eval(dataset, tiny_config, tmp_path, monkeypatch, capsys):
    """From a temporary cwd, relative --pretrain_data/--bert_config_file/--eval_data and the default
    --output_dir=output train and save; a next phase with --init_checkpoint=output/t, `bertbeam export` and
    `bertbeam evaluate` with relative --checkpoint work."""
    from pipeline import main as cli
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    data, cfg = os.path.relpath(dataset, work), os.path.relpath(tiny_config, work)
    argv = _flags(pretrain_data=data, bert_config_file=cfg, eval_data=data, eval_every_steps=3,
                  max_eval_examples=16, checkpoint_every_secs=1e-6, keep_checkpoints=10)
    assert cli.main(["train", *argv]) == 0
    run = work / "output" / "t"
    # Time-based cadence: with a (tiny) --checkpoint_every_secs every step saved, though steps_per_loop *
    # checkpoint_every_loops = 20 is past the end.
    assert sorted(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit()) == [1, 2, 3, 4, 5, 6]
    logs = json.loads((run / "run_logs.json").read_text())
    assert [e["step"] for e in logs["eval_history"]] == [3, 6]
    for key in ("eval_masked_lm_accuracy", "eval_lm_example_loss", "eval_next_sentence_accuracy",
                "eval_next_sentence_loss"):
        assert np.isfinite(logs["eval_history"][-1][key]), key
    assert logs["last_eval_metrics"]["eval_num_examples"] == 16
    assert logs["flags"]["output_dir"] == str(work / "output")  # made absolute at the boundary
    tags = _event_tags(run / "summaries" / "train")
    assert {"eval_masked_lm_accuracy", "eval_lm_example_loss", "masked_lm_accuracy", "lr"} <= tags
    capsys.readouterr()
    assert cli.main(["train", *_flags(pretrain_data=data, bert_config_file=cfg, run_prefix="t2",
                                      init_weights=False, init_checkpoint="output/t", expect_partial=True,
                                      load_mlm_nsp_weights=True, num_steps_per_epoch=8)]) == 0
    assert "bertbeam checkpoint" in capsys.readouterr().out and (work / "output" / "t2" / "checkpoints" / "8").is_dir()
    assert cli.main(["export", "--checkpoint", "output/t", "--output_dir", "exported"]) == 0
    assert (work / "exported" / "bert_model.ckpt.index").exists()
    capsys.readouterr()
    assert cli.main(["evaluate", "--checkpoint", "output/t/checkpoints/6", "--eval_data", data,
                     "--max_eval_examples", "16"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["step"] == 6
    # The same numbers the trainer logged after its last step (same params, same 16 records, no dropout).
    assert result["lm_example_loss"] == pytest.approx(logs["eval_history"][-1]["eval_lm_example_loss"], rel=1e-6)


def _event_tags(folder: Path):
    import tensorflow as tf
    tags = set()
    for path in folder.glob("events.out.tfevents*"):
        for raw in tf.data.TFRecordDataset(str(path)):
            event = tf.compat.v1.Event.FromString(raw.numpy())
            tags.update(v.tag for v in event.summary.value)
    return tags


def _popen_train(argv, cwd):
    import jax
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    cache = jax.config.jax_compilation_cache_dir
    if cache:  # share this module's compilation cache: the subprocess need not compile what the tests did
        env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return subprocess.Popen([sys.executable, "-m", "pipeline.main", "train", *argv], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_sigterm_finishes_the_step_saves_and_exits_zero(dataset, tiny_config, tmp_path):
    """A real SIGTERM to `bertbeam train` (as a preempted VM gets): exit 0, the step it was in saved although
    no checkpoint was due, and a relaunch resumes there."""
    from training import config as config_lib, train
    argv = _flags(pretrain_data=dataset, bert_config_file=tiny_config, output_dir=tmp_path, num_steps_per_epoch=500,
                  steps_per_loop=1, checkpoint_every_loops=1000)
    proc = _popen_train(argv, tmp_path)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("Train Step: 3/"):
            proc.send_signal(signal.SIGTERM)
            break
    out = "".join(lines) + proc.stdout.read()
    assert proc.wait(timeout=120) == 0, out
    assert "SIGTERM: saved step" in out, out
    # TensorFlow's native start-up lines are held back (they ignore TF_CPP_MIN_LOG_LEVEL in TF 2.2x).
    assert not any(noise in out for noise in ("InitializeLog", "oneDNN", "cudart_stub", "cuInit")), out
    saved = sorted(int(p.name) for p in (tmp_path / "t" / "checkpoints").iterdir() if p.name.isdigit())
    assert len(saved) == 1 and 3 <= saved[0] < 500, (saved, out)
    resumed = train.train(config_lib.build_config(argv + ["--stop_after_steps=2"]))
    assert resumed["origin"] == f"resumed {tmp_path / 't'} at step {saved[0]}" and resumed["step"] == saved[0] + 2


def test_sigkill_during_an_orbax_save_then_relaunch_equals_uninterrupted(dataset, tiny_config, tmp_path):
    """SIGKILL `bertbeam train` while an Orbax save is in flight (its temporary folder exists), relaunch:
    the run resumes from the last complete checkpoint and ends with the parameters of an uninterrupted run."""
    from training import config as config_lib, train
    common = dict(pretrain_data=dataset, bert_config_file=tiny_config, num_steps_per_epoch=10, steps_per_loop=1,
                  checkpoint_every_loops=1, keep_checkpoints=2)
    full = train.train(config_lib.build_config(_flags(output_dir=tmp_path / "full", **common)))
    argv = _flags(output_dir=tmp_path / "cut", **common)
    ckpt_dir = tmp_path / "cut" / "t" / "checkpoints"
    killed_mid_save = None
    for _ in range(3):  # the kill races the save; retry a fresh run if the save finished first
        proc = _popen_train(argv, tmp_path)
        deadline = time.time() + 180
        while proc.poll() is None and time.time() < deadline:
            partial = [p.name for p in ckpt_dir.glob("*") if "tmp" in p.name] if ckpt_dir.is_dir() else []
            done = [int(p.name) for p in ckpt_dir.glob("*") if p.name.isdigit()] if ckpt_dir.is_dir() else []
            if partial and done and max(done) >= 3:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
        proc.wait(timeout=60)
        leftover = [p.name for p in ckpt_dir.glob("*") if "tmp" in p.name]
        if proc.returncode == -signal.SIGKILL and leftover:
            killed_mid_save = leftover
            break
        import shutil
        shutil.rmtree(tmp_path / "cut")
    assert killed_mid_save, "could not kill the trainer while a save was in flight"
    print("killed during the save of", killed_mid_save, "complete:", sorted(p.name for p in ckpt_dir.iterdir()))
    resumed = train.train(config_lib.build_config(argv))
    assert resumed["origin"].startswith("resumed") and resumed["step"] == 10
    a, b = _leaves(full["params"]), _leaves(resumed["params"])
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_resuming_an_unrestorable_optimizer_state_is_a_clear_error(dataset, tiny_config, tmp_path):
    """A run whose checkpointed optimizer state does not fit (another --optimizer_type, or a checkpoint from before
    the global-step learning rate) says how to continue it instead of an Orbax tree dump."""
    import jax
    from training import checkpoints, config as config_lib, models, train
    common = dict(pretrain_data=dataset, bert_config_file=tiny_config, output_dir=tmp_path, num_steps_per_epoch=1)
    setup = train.build_setup(config_lib.build_config(_flags(optimizer_type="adamw", **common)))
    params = models.init_params(setup.model, jax.random.PRNGKey(0), SEQ, PREDS)
    manager = checkpoints.make_manager(setup.run_dir, 1)
    checkpoints.save(manager, 1, params, setup.tx.init(params), {})  # an AdamW run's checkpoint at step 1
    manager.wait_until_finished()
    manager.close()
    with pytest.raises(config_lib.ConfigError, match="--expect_partial"):
        train.train(config_lib.build_config(_flags(optimizer_type="lamb", **common)))
