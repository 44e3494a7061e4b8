"""ALBERT's create_pretraining_data.py and run_pretraining.py flag spellings, mapped onto bertbeam's."""
import os
import pytest

from pipeline import build
from training import run_pretraining_flags as rpf

BASE = ["--input_file=x", "--output_dir=y", "--vocab_file=v"]


@pytest.mark.parametrize("extra,pairing", [
    ([], "nsp"),
    (["--random_next_sentence=False"], "sop"),  # ALBERT's default data: sentence order
    (["--random_next_sentence", "True"], "nsp"),
    (["--norandom_next_sentence"], "sop"),
    (["--pairing=none", "--random_next_sentence=False"], "none"),  # the seed: MLM only, flag ignored
    (["--pairing=sop", "--random_next_sentence=False"], "sop"),
])
def test_random_next_sentence_sets_pairing_when_unset(extra, pairing):
    args, _ = build.parse_args(BASE + extra)
    assert args.pairing == pairing


def test_ngram_keep_accents_do_permutation():
    args, beam = build.parse_args(BASE + ["--ngram=3", "--keep_accents=True", "--do_permutation=False"])
    assert args.max_ngram_size == 3 and args.strip_accents is False and not beam
    args, _ = build.parse_args(BASE + ["--keep_accents=False"])
    assert args.strip_accents is True
    args, _ = build.parse_args(BASE)
    assert args.strip_accents is None and args.max_ngram_size == 1


@pytest.mark.parametrize("extra,message", [
    (["--do_permutation=True"], "--do_permutation=True is not supported"),
    (["--do_permutation"], "--do_permutation=True is not supported"),
    (["--pairing=nsp", "--random_next_sentence=False"], "contradicts --pairing=nsp"),
    (["--pairing=sop", "--random_next_sentence=True"], "contradicts --pairing=sop"),
    (["--keep_accents=True", "--strip_accents=True"], "contradicts --strip_accents"),
])
def test_unsupported_or_contradicting_albert_flags_are_clear_errors(extra, message):
    with pytest.raises(build.FlagError, match=message):
        build.parse_args(BASE + extra)


def test_main_reports_do_permutation_as_a_flag_error(capsys):
    assert build.main(BASE + ["--do_permutation=True"]) == 2
    assert "bertbeam build: error: --do_permutation=True is not supported" in capsys.readouterr().err


SEED_TRAIN = ["--input_file=DATA/*.tf_record", "--output_dir=gs://b/training-results/tibert-base-128-no-sop/",
              "--albert_config_file=/tmp/albert_base/albert_config.json", "--do_train", "--train_batch_size=1024",
              "--max_seq_length=128", "--max_predictions_per_seq=20", "--optimizer=lamb", "--learning_rate=.00176",
              "--num_warmup_steps=3125", "--num_train_steps=1000000", "--save_checkpoints_steps=1000",
              "--keep_checkpoint_max=100", "--use_tpu=true", "--tpu_name=tibert-tpu", "--tpu_zone=us-central1-a",
              "--num_tpu_cores=8"]


def test_seed_run_pretraining_command_translates():
    argv, notes = rpf.translate(SEED_TRAIN, glob=lambda p: ["DATA/a.tf_record"], exists=lambda p: True)
    from training import config as config_lib
    cfg = config_lib.build_config(argv)
    # Local paths are made absolute at the boundary (relative ones against the launch directory).
    assert os.path.isabs(cfg.pretrain_data) and os.path.basename(cfg.pretrain_data) == "DATA"
    assert cfg.albert_config_file == "/tmp/albert_base/albert_config.json"
    assert config_lib.total_steps(cfg) == 1_000_000 and cfg.warmup_steps == 3125
    assert (cfg.steps_per_loop * cfg.checkpoint_every_loops, cfg.keep_checkpoints) == (1000, 100)
    assert (cfg.optimizer_type, cfg.learning_rate, cfg.train_batch_size) == ("lamb", 0.00176, 1024)
    assert (cfg.max_seq_length, cfg.max_predictions_per_seq) == (128, 20)
    assert cfg.init_weights and not cfg.init_checkpoint
    text = " ".join(notes)
    assert "--use_tpu, --tpu_name, --tpu_zone, --num_tpu_cores: accepted, not needed" in text
    assert "--pretrain_data=DATA" in text


def test_plain_bertbeam_flags_pass_through_unchanged():
    argv = ["--pretrain_data=d", "--model_class=bert_base", "--warmup_steps=5", "--init_checkpoint=c"]
    assert rpf.translate(argv) == (argv, [])


@pytest.mark.parametrize("argv,message", [
    (["--input_file=a/*/x.rec"], "folder part has wildcards"),
    (["--input_file=a/x.rec,b/y.rec"], "2 folders"),
    (["--num_warmup_steps=5", "--warmup_steps=5"], "--warmup_steps given together"),
    (["--optimizer=sgd"], "use lamb or adamw"),
    (["--do_eval=True"], "--do_eval=True is not supported"),
    (["--do_train=False"], "only trains"),
    (["--num_train_steps=1.5"], "integer"),
    (["--poly_power=2"], "linear decay"),
])
def test_bad_run_pretraining_flags_are_clear_errors(argv, message):
    with pytest.raises(rpf.RunPretrainingFlagError, match=message):
        rpf.translate(argv, glob=lambda p: [p], exists=lambda p: True)


def test_input_file_must_match_and_have_a_manifest(tmp_path):
    with pytest.raises(rpf.RunPretrainingFlagError, match="matches no file"):
        rpf.translate([f"--input_file={tmp_path}/*.tfrecord"])
    (tmp_path / "train-00000-of-00001.tfrecord").write_bytes(b"")
    with pytest.raises(rpf.RunPretrainingFlagError, match="no manifest.json"):
        rpf.translate([f"--input_file={tmp_path}/*.tfrecord"])
    (tmp_path / "manifest.json").write_text("{}")
    argv, _ = rpf.translate([f"--input_file={tmp_path}/*.tfrecord"])
    assert f"--pretrain_data={tmp_path}" in argv


def test_save_checkpoints_steps_maps_to_loops():
    argv, _ = rpf.translate(["--save_checkpoints_steps=2500", "--iterations_per_loop=1000"])
    assert "--steps_per_loop=500" in argv and "--checkpoint_every_loops=5" in argv
    argv, _ = rpf.translate(["--save_checkpoints_steps=10"])
    assert "--steps_per_loop=10" in argv and "--checkpoint_every_loops=1" in argv
