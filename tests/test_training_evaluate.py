"""`bertbeam evaluate` and training.evaluate: BERT's eval metrics on held-out records (NSP, SOP, MLM-only)."""
import json

import numpy as np
import pytest

from test_training import PREDS, SEQ, TINY, build_with_pipeline, compilation_cache, needs_shared  # noqa: F401

pytestmark = needs_shared


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaldata")
    return {"nsp": build_with_pipeline(root / "nsp"),
            "sop": build_with_pipeline(root / "sop", "--pairing=sop"),
            "dyn": build_with_pipeline(root / "dyn", "--masking=dynamic", "--pairing=none")}


def _model(kind="bert", with_nsp=True, seed=0, **overrides):
    import jax
    from training import model_configs, models
    base = dict(TINY, embedding_size=32) if kind == "albert" else dict(TINY)
    cfg = model_configs.from_dict(dict(base, **overrides), kind)
    params = models.init_params(models.build_model(cfg, with_nsp), jax.random.PRNGKey(seed), SEQ, PREDS)
    return cfg, jax.device_get(params)


def _first_records(data_dir, n):
    """The first n records, read independently of training.evaluate: shard 0 in file order, then shard 1."""
    import tensorflow as tf
    manifest = json.loads((data_dir / "manifest.json").read_text())
    out = []
    for shard in manifest["shards"]:
        for raw in tf.data.TFRecordDataset(str(data_dir / shard["path"])):
            out.append(tf.train.Example.FromString(raw.numpy()).features.feature)
            if len(out) == n:
                break
        if len(out) == n:
            break

    def col(name, dtype):
        return np.array([list(f[name].int64_list.value or f[name].float_list.value) for f in out], dtype)

    batch = {k: col(k, np.int32) for k in ("input_ids", "input_mask", "segment_ids", "masked_lm_positions",
                                           "masked_lm_ids")}
    batch["masked_lm_weights"] = col("masked_lm_weights", np.float32)
    batch["next_sentence_labels"] = col("next_sentence_labels", np.int32)[:, 0]
    return batch


def test_metrics_are_berts_formulas_on_the_first_records(data):
    """lm_example_loss = Σw·nll/(Σw+1e-5) over the first N records in shard order, independent of batching."""
    import jax
    from training import evaluate, models
    cfg, params = _model()
    n = 21
    one = evaluate.evaluate_params(cfg, params, str(data["nsp"]), n, eval_batch_size=n)
    split = evaluate.evaluate_params(cfg, params, str(data["nsp"]), n, eval_batch_size=4)  # 5 full + 1 short
    assert one["num_examples"] == split["num_examples"] == n
    for key in ("masked_lm_accuracy", "lm_example_loss", "next_sentence_accuracy", "next_sentence_loss"):
        assert one[key] == pytest.approx(split[key], rel=1e-6, abs=1e-7), key
    # Reference: the model applied by hand to the same records, BERT's formulas in numpy.
    batch = _first_records(data["nsp"], n)
    out = models.build_model(cfg, True).apply({"params": params}, batch["input_ids"], batch["input_mask"],
                                              batch["segment_ids"], batch["masked_lm_positions"], True)
    logp = np.asarray(jax.nn.log_softmax(out["mlm_logits"]), np.float64)
    nll = -np.take_along_axis(logp, batch["masked_lm_ids"][..., None], -1)[..., 0]
    w = batch["masked_lm_weights"].astype(np.float64)
    assert one["lm_example_loss"] == pytest.approx((nll * w).sum() / (w.sum() + 1e-5), rel=1e-5)
    nsp = np.asarray(jax.nn.log_softmax(out["nsp_logits"]), np.float64)
    labels = batch["next_sentence_labels"]
    assert one["next_sentence_loss"] == pytest.approx(-nsp[np.arange(n), labels].mean(), rel=1e-5)
    assert one["next_sentence_accuracy"] == pytest.approx((nsp.argmax(-1) == labels).mean())
    # Not shuffled: evaluating the next records gives other numbers.
    other = evaluate.evaluate_params(cfg, params, str(data["nsp"]), 2 * n, eval_batch_size=n)
    assert other["lm_example_loss"] != pytest.approx(one["lm_example_loss"], rel=1e-6)


def test_albert_sop_and_dynamic_mlm_only(data):
    from training import evaluate
    cfg, params = _model("albert", with_nsp=True)
    sop = evaluate.evaluate_params(cfg, params, str(data["sop"]), 16)
    assert set(sop) == {"masked_lm_accuracy", "lm_example_loss", "next_sentence_accuracy", "next_sentence_loss",
                        "num_examples"}
    assert sop["lm_example_loss"] == pytest.approx(np.log(TINY["vocab_size"]), rel=0.05)  # random init
    # MLM-only dynamic masking: no NSP keys; masks from a fixed seed, so repeated evaluations agree exactly.
    dyn = [evaluate.evaluate_params(cfg, params, str(data["dyn"]), 16, 8) for _ in range(2)]
    assert "next_sentence_loss" not in dyn[0] and "next_sentence_accuracy" not in dyn[0]
    assert dyn[0] == dyn[1]
    # An MLM-only ALBERT (no pooler/SOP head, type_vocab_size 1) on the same records: the same MLM metrics shape.
    mlm_cfg, mlm_params = _model("albert", with_nsp=False, type_vocab_size=1)
    mlm_only = evaluate.evaluate_params(mlm_cfg, mlm_params, str(data["dyn"]), 16, 8)
    assert set(mlm_only) == {"masked_lm_accuracy", "lm_example_loss", "num_examples"} and mlm_only["num_examples"] == 16
    # A model without the NSP head cannot score SOP records: a clear error, not a silent partial result.
    with pytest.raises(evaluate.EvalError, match="no cls/seq_relationship head"):
        evaluate.evaluate_params(mlm_cfg, mlm_params, str(data["sop"]), 8)


def test_cli_on_a_run_and_on_its_tf_export(data, tmp_path, capsys, monkeypatch):
    """`bertbeam evaluate` prints a summary on stderr and one JSON object as stdout's last line, for a run folder
    (relative path, from another cwd) and for the TF checkpoint exported from it: same numbers."""
    from pipeline import main as cli
    from training import config as config_lib, export, train
    cfg_file = tmp_path / "bert_config.json"
    cfg_file.write_text(json.dumps(TINY))
    flags = {"pretrain_data": data["nsp"], "bert_config_file": cfg_file, "output_dir": tmp_path / "runs",
             "train_batch_size": 8, "max_seq_length": SEQ, "max_predictions_per_seq": PREDS,
             "num_steps_per_epoch": 3, "steps_per_loop": 3, "learning_rate": 1e-3, "warmup_steps": 0,
             "init_weights": True, "shuffle_buffer": 16, "run_prefix": "r"}
    train.train(config_lib.build_config([f"--{k}={v}" for k, v in flags.items()]))
    assert export.main(["--checkpoint", str(tmp_path / "runs" / "r"), "--output_dir", str(tmp_path / "tf")]) == 0
    capsys.readouterr()
    monkeypatch.chdir(tmp_path / "runs")
    results = []
    for ckpt in ("r", str(tmp_path / "tf" / "bert_model.ckpt")):
        assert cli.main(["evaluate", "--checkpoint", ckpt, "--eval_data", str(data["nsp"]),
                         "--max_eval_examples", "12", "--eval_batch_size", "5"]) == 0
        captured = capsys.readouterr()
        assert "Eval results" in captured.err and "masked_lm_accuracy" in captured.err
        results.append(json.loads(captured.out.strip().splitlines()[-1]))
    run, tf_export = results
    assert run["step"] == tf_export["step"] == 3 and run["num_examples"] == 12
    for key in ("masked_lm_accuracy", "lm_example_loss", "next_sentence_accuracy", "next_sentence_loss"):
        assert run[key] == pytest.approx(tf_export[key], rel=1e-6), key
    assert cli.main(["evaluate", "--checkpoint", "nowhere", "--eval_data", str(data["nsp"])]) == 2
    assert "neither a TF checkpoint" in capsys.readouterr().err
