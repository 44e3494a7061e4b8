"""The seed runs as training configs: they load as `bertbeam train` configs and give the seed's learning rates."""
import dataclasses
import importlib.util
from pathlib import Path

import pytest

from pipeline import plan

REPO = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO / "training" / "configs"

EXPECTED_CONFIGS = {
    "t1_mbert_step1", "t1_mbert_step2", "t1_mbert_step3", "t1_mbert_step4", "t1_mbert_step3b",
    "t2_devlin_step1", "t2_devlin_step2", "t3_devlin_mbert_step1", "t3_devlin_mbert_step2",
    "t4_norwegian_cased_step1", "t4_norwegian_cased_step2", "t4_norwegian_cased_step3",
    "t9_bert_large_seq128", "t9_bert_large_seq512", "t10_bert_large_seq128", "t10_bert_large_seq512",
    "albert_base_mlm_only",
}


def _cfg(name):
    return plan.load_config(str(CONFIG_DIR / f"{name}.yaml"))


def test_every_seed_run_has_a_config():
    assert {p.stem for p in CONFIG_DIR.glob("*.yaml")} == EXPECTED_CONFIGS


# (config, global step, learning rate the seed's schedule gives there). Sources: the seed's flags, its
# comments ("for it to reach 4e-4 at 10 epochs") and its logged "lr = ..." lines.
LR_AT = [
    ("t1_mbert_step1", 0, 0.0),
    ("t1_mbert_step1", 25_000, 2e-4),  # half-way through the 50k warm-up
    ("t1_mbert_step1", 50_000, 4e-4),
    ("t1_mbert_step1", 700_000, 4e-4),  # log: "Train Step: 700000/700000 ... lr = 0.000400"
    ("t1_mbert_step2", 700_000, 4e-4),
    ("t1_mbert_step2", 1_000_000, 4e-4),
    ("t1_mbert_step3", 1_000_000, 4e-4),  # "24e-4 ... for it to reach 4e-4 at 10 epochs"
    ("t1_mbert_step3", 1_100_000, 2e-4),
    ("t1_mbert_step3", 1_200_000, 0.0),  # log: "Train Step: 1200000/1200000 ... lr = 0.000000"
    ("t1_mbert_step4", 1_200_000, 4e-4),  # "10e-4 to reach 4e-4 ... at 12 epochs"
    ("t1_mbert_step4", 2_000_000, 0.0),
    ("t1_mbert_step3b", 1_000_000, 4e-4),  # 8e-4 -> 4e-4 at 10 epochs
    ("t1_mbert_step3b", 2_000_000, 0.0),
    ("t2_devlin_step1", 5_000, 5e-5),
    ("t2_devlin_step1", 10_000, 1e-4 - 9e-5 * 10_000 / 900_000),  # warm-up ends on the decay line
    ("t2_devlin_step1", 900_000, 1e-5),  # log: "lr = 0.000010"
    ("t2_devlin_step2", 900_000, 1e-5),  # continues where step 1 ended
    ("t2_devlin_step2", 1_000_000, 0.0),
    ("t3_devlin_mbert_step1", 10_000, 2e-5 - 1.8e-5 * 10_000 / 900_000),
    ("t3_devlin_mbert_step1", 900_000, 2e-6),  # log: "lr = 0.000002"
    ("t3_devlin_mbert_step2", 900_000, 2e-6),
    ("t3_devlin_mbert_step2", 1_000_000, 0.0),
    ("t4_norwegian_cased_step1", 800_000, 4e-4),
    ("t4_norwegian_cased_step2", 700_000, 4e-4),  # 76e-5 was chosen to meet 4e-4 at 700k ...
    ("t4_norwegian_cased_step2", 800_000, 4e-5 + 72e-5 * 6 / 14),  # ... the run restored 800k: 3.486e-4
    ("t4_norwegian_cased_step2", 1_400_000, 4e-5),  # log: "Train Step: 1400000/1400000 ... lr = 0.000040"
    ("t4_norwegian_cased_step3", 1_400_000, 909e-7 * 0.44),  # = 3.9996e-5: continuous with step 2's 4e-5
    ("t4_norwegian_cased_step3", 2_500_000, 0.0),  # log: "Train Step: 2500000/2500000 ... lr = 0.000000"
    ("t9_bert_large_seq128", 5_000, 2.5e-3),
    ("t9_bert_large_seq128", 10_000, 5e-3 * 0.9),  # PolynomialDecay counts from 0: 4.5e-3 after warm-up
    ("t9_bert_large_seq128", 100_000, 0.0),
    ("t9_bert_large_seq512", 10_000, 2.5e-3 * 5 / 6),
    ("t9_bert_large_seq512", 60_000, 0.0),  # log: "Train Step: 60000/60000 ... lr = 0.000000"
    ("t10_bert_large_seq128", 10_000, 2.5e-3 * 0.95),
    ("t10_bert_large_seq128", 200_000, 0.0),
    ("albert_base_mlm_only", 3_124, 0.00176 * 3_124 / 3_125),
    ("albert_base_mlm_only", 3_125, 0.00176 * (1 - 3_125 / 1_000_000)),
    ("albert_base_mlm_only", 500_000, 0.00088),
    ("albert_base_mlm_only", 1_000_000, 0.0),
]


@pytest.mark.parametrize("name,step,expected", LR_AT)
def test_learning_rate_at_key_steps(name, step, expected):
    assert plan.seed_learning_rate(_cfg(name), step) == pytest.approx(expected, rel=1e-9, abs=1e-15)


# The lr the seed logged at the last step, printed as the trainer printed it ("lr = %f").
LOGGED_FINAL_LR = [
    ("t1_mbert_step1", "0.000400"), ("t1_mbert_step3", "0.000000"), ("t2_devlin_step1", "0.000010"),
    ("t2_devlin_step2", "0.000000"), ("t3_devlin_mbert_step1", "0.000002"), ("t3_devlin_mbert_step2", "0.000000"),
    ("t4_norwegian_cased_step2", "0.000040"), ("t4_norwegian_cased_step3", "0.000000"),
    ("t9_bert_large_seq512", "0.000000"),
]


@pytest.mark.parametrize("name,logged", LOGGED_FINAL_LR)
def test_logged_final_lr(name, logged):
    cfg = _cfg(name)
    assert f"{plan.seed_learning_rate(cfg, plan.config_total_steps(cfg)):f}" == logged


@pytest.mark.parametrize("first,second", [
    ("t1_mbert_step1", "t1_mbert_step2"), ("t1_mbert_step2", "t1_mbert_step3"),
    ("t1_mbert_step2", "t1_mbert_step3b"),
    ("t2_devlin_step1", "t2_devlin_step2"), ("t3_devlin_mbert_step1", "t3_devlin_mbert_step2"),
    ("t4_norwegian_cased_step2", "t4_norwegian_cased_step3"),
])
def test_continued_runs_start_where_the_previous_ended(first, second):
    a, b = _cfg(first), _cfg(second)
    assert b["start_step"] == plan.config_total_steps(a)
    # 909e-7 (T4 step 3) is the seed's rounding of 4e-5 / 0.44; the others meet exactly.
    assert plan.seed_learning_rate(b, b["start_step"]) == pytest.approx(
        plan.seed_learning_rate(a, plan.config_total_steps(a)), rel=2e-4, abs=1e-15)


def test_t1_step4_jumps_back_up_after_step3_decayed_to_zero():
    # Step 3 ends at lr 0 (seq 512); step 4 returns to seq 128 at 4e-4 by design, "to reach 4e-4 ... at 12 epochs".
    step3, step4 = _cfg("t1_mbert_step3"), _cfg("t1_mbert_step4")
    assert step4["start_step"] == plan.config_total_steps(step3) == 1_200_000
    assert plan.seed_learning_rate(step3, 1_200_000) == 0.0
    assert plan.seed_learning_rate(step4, 1_200_000) == pytest.approx(4e-4)


def test_t4_step2_continues_from_the_step_1_checkpoint_at_800k():
    # Step 1's 14-epoch schedule was stopped at 800,000 (ctl_step_800000.ckpt-8).
    step1, step2 = _cfg("t4_norwegian_cased_step1"), _cfg("t4_norwegian_cased_step2")
    assert step2["start_step"] == 800_000 < plan.config_total_steps(step1)
    assert step2["init_checkpoint"].endswith(step1["run_prefix"])


def test_seed_hyperparameters():
    t1 = _cfg("t1_mbert_step1")
    assert (t1["train_batch_size"], t1["optimizer_type"], t1["warmup_steps"]) == (2760, "lamb", 50_000)
    assert _cfg("t1_mbert_step4")["train_batch_size"] == 2640
    assert _cfg("t2_devlin_step1")["init_weights"] is True
    assert _cfg("t2_devlin_step1")["optimizer_type"] == _cfg("t3_devlin_mbert_step1")["optimizer_type"] == "adamw"
    large = _cfg("t9_bert_large_seq128")
    assert (large["train_batch_size"], large["learning_rate"], large["warmup_steps"]) == (32768, 5e-3, 10_000)
    assert _cfg("t9_bert_large_seq512")["train_batch_size"] == 8192
    albert = _cfg("albert_base_mlm_only")
    assert (albert["optimizer_type"], albert["train_batch_size"], albert["learning_rate"],
            albert["warmup_steps"], plan.config_total_steps(albert), albert["max_seq_length"],
            albert["max_predictions_per_seq"]) == ("lamb", 1024, 0.00176, 3125, 1_000_000, 128, 20)
    for name in EXPECTED_CONFIGS:  # seq 512 runs carry the seed's 77 predictions, seq 128 its 19
        cfg = _cfg(name)
        if name != "albert_base_mlm_only":
            assert cfg["max_predictions_per_seq"] == {128: 19, 512: 77}[cfg["max_seq_length"]], name


def test_t1_step1_wall_time_matches_the_seed_log():
    # 700,000 steps x 2,760 at the logged 2,714.60 examples/s vs "Finished training after 11870.7 min".
    report = plan.plan_phase(plan.phase_from_config(_cfg("t1_mbert_step1")), 405_354_995, 2714.60)
    assert report.wall_seconds / 60 == pytest.approx(11870.7, rel=1e-3)


def test_load_config_coerces_yaml_strings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("learning_rate: 4e-4\nend_lr: 1e-5\nnum_epochs: '7'\nnum_steps_per_epoch: 100_000\n"
                    "warmup_steps: 50000\nexpect_partial: 'True'\n")
    cfg = plan.load_config(str(path))
    assert cfg["learning_rate"] == 4e-4 and isinstance(cfg["learning_rate"], float)
    assert cfg["num_epochs"] == 7 and cfg["num_steps_per_epoch"] == 100_000 and cfg["expect_partial"] is True


def test_configs_only_use_train_flag_names(tmp_path):
    """Each config is a valid `bertbeam train --config` file (start_step aside, if train lacks it)."""
    config_mod = pytest.importorskip("training.config")
    fields = {f.name for f in dataclasses.fields(config_mod.TrainConfig)}
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        mine = plan.load_config(str(path))
        assert set(mine) - {"start_step"} <= fields, path.name
        text = path.read_text()
        if "start_step" not in fields:
            text = "\n".join(l for l in text.splitlines() if not l.startswith("start_step:"))
        copy = tmp_path / path.name
        copy.write_text(text)
        cfg = config_mod.build_config(["--config", str(copy)])
        for key, value in mine.items():
            if key in config_mod.PATH_FIELDS:  # local paths are made absolute against the launch cwd
                value = config_mod.absolute_path(value)
            if key in fields:
                assert getattr(cfg, key) == pytest.approx(value) if isinstance(value, float) \
                    else getattr(cfg, key) == value, (path.name, key)


@pytest.mark.skipif(importlib.util.find_spec("training.schedules") is None,
                    reason="training/schedules.py not written yet")
@pytest.mark.parametrize("name", sorted(EXPECTED_CONFIGS))
def test_training_schedule_agrees(name):
    from training.schedules import learning_rate_fn  # pylint: disable=import-outside-toplevel
    cfg = _cfg(name)
    total = plan.config_total_steps(cfg)
    fn = learning_rate_fn(cfg["learning_rate"], cfg["end_lr"], cfg["warmup_steps"], total)
    steps = sorted({0, 1, cfg["warmup_steps"] // 2, cfg["warmup_steps"], cfg.get("start_step", 0),
                    total // 3, total - 1, total})
    for step in steps:
        assert float(fn(step)) == pytest.approx(plan.seed_learning_rate(cfg, step), rel=1e-5, abs=1e-10), step


def test_model_classes_resolve():
    model_configs = pytest.importorskip("training.model_configs")
    sizes = {}
    for name in sorted(EXPECTED_CONFIGS):
        cfg = _cfg(name)
        sizes[name] = model_configs.get_model_class(cfg["model_class"]).model
    assert sizes["t1_mbert_step1"].vocab_size == 119_547  # mBERT
    assert sizes["t4_norwegian_cased_step1"].vocab_size == 50_000  # "Created with a 50k vocab-file"
    assert sizes["t9_bert_large_seq128"].num_hidden_layers == 24  # BERT-large (T9 had the wrong count)
    assert sizes["albert_base_mlm_only"].vocab_size == 30_000  # albert_base_v2
