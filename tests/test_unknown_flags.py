"""A misspelled flag is an error naming it and the closest known flag, for every subcommand (issue 21 item 10).

Before, `bertbeam build ... --dupe_factr=3` built with the default dupe_factor and only Beam's
"Discarding unparseable args" warning said so; the argparse subcommands said "unrecognized arguments" with no
suggestion. Everything here stops at flag parsing: no dataset is built, no model loaded."""
import pytest

from pipeline import build
from pipeline import flags as flaglib
from pipeline import main as cli


def _run(argv, capsys):
    """Exit status and stderr of `bertbeam ARGV` (argparse's errors exit; bertbeam's own return 2)."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def _build_argv(tmp_path, demo_vocab, *extra):
    return [f"--input_file={tmp_path / 'no_such_corpus.txt'}", f"--output_dir={tmp_path / 'out'}",
            f"--vocab_file={demo_vocab}", "--max_seq_length=64", "--max_predictions_per_seq=10", *extra]


def test_build_misspelled_flag_is_an_error_with_the_closest_flag(tmp_path, demo_vocab, capsys):
    code, err = _run(["build", *_build_argv(tmp_path, demo_vocab, "--dupe_factr=3")], capsys)
    assert code == 2
    assert "bertbeam build: error: unknown flag --dupe_factr (did you mean --dupe_factor?)" in err
    assert "Discarding unparseable args" not in err
    assert not (tmp_path / "out").exists()


def test_build_misspelled_beam_flag_and_separate_value(tmp_path, demo_vocab):
    with pytest.raises(build.FlagError, match=r"unknown flag --direct_num_worker \(did you mean "
                                              r"--direct_num_workers\?\)$"):
        build.run_all(_build_argv(tmp_path, demo_vocab, "--direct_num_worker", "2"))


def test_build_accepts_beam_flags(tmp_path, demo_vocab):
    """Real Beam options pass the check: the build goes on to the next problem (the missing corpus)."""
    argv = _build_argv(tmp_path, demo_vocab, "--direct_num_workers=2", "--direct_running_mode=multi_processing")
    with pytest.raises(build.FlagError, match="no_such_corpus.txt") as e:
        build.run_all(argv)
    assert "unknown flag" not in str(e.value)
    args, beam_args = build.parse_args(argv)
    assert flaglib.beam_unknown_args_message(beam_args, build.build_parser()) is None


def test_build_accepts_dask_options_with_the_dask_runner(tmp_path, demo_vocab):
    """DaskRunner's --dask_* options exist only once Beam's dask_runner module is imported (by local_runner):
    the check runs after that."""
    pytest.importorskip("distributed")
    dask = ["--runner=DaskRunner", "--dask_client_address=tcp://127.0.0.1:1", "--allow_local_paths"]
    with pytest.raises(build.FlagError, match="no_such_corpus.txt") as e:
        build.run_all(_build_argv(tmp_path, demo_vocab, *dask))
    assert "unknown flag" not in str(e.value)
    with pytest.raises(build.FlagError, match=r"unknown flag --dask_clent_address \(did you mean "
                                              r"--dask_client_address\?\)"):
        build.run_all(_build_argv(tmp_path, demo_vocab, "--runner=DaskRunner",
                                  "--dask_clent_address=tcp://127.0.0.1:1", "--allow_local_paths"))


def test_build_bad_value_of_a_beam_flag_is_one_line():
    message = flaglib.beam_unknown_args_message(["--direct_num_workers=two"], build.build_parser())
    assert message == "argument --direct_num_workers: invalid int value: 'two'"


def test_unknown_args_message():
    known = ["--dupe_factor", "--max_seq_length"]
    assert flaglib.unknown_args_message([], known) is None
    assert flaglib.unknown_args_message(["--dupe_factr", "3"], known) == \
        "unknown flag --dupe_factr (did you mean --dupe_factor?)"
    assert flaglib.unknown_args_message(["--zzz=1", "stray"], known) == \
        "unknown flag --zzz; unexpected argument 'stray'"


@pytest.mark.parametrize("argv, wrong, meant", [
    (["inspect", "some/dataset", "--num_instnces=1"], "--num_instnces", "--num_instances"),
    (["segment", "--lnag", "bo"], "--lnag", "--lang"),
    (["plan", "--phse", "128:100:8"], "--phse", "--phase"),
    (["vocab", "--input_file=x", "--output_dir=y", "--vocab_size=100", "--vocab_sze=200"],
     "--vocab_sze", "--vocab_size"),
    (["vocab", "report", "--vocab_file=v", "--heldout_file=h", "--compare_vocb=w"], "--compare_vocb",
     "--compare_vocab"),
    (["vocab", "validate", "--vocab_file=v", "--vocabfile=w"], "--vocabfile", "--vocab_file"),
    (["evaluate", "--checkpoint=c", "--eval_data=d", "--eval_batch_sise=4"], "--eval_batch_sise",
     "--eval_batch_size"),
    (["export", "--checkpoint=c", "--output_dir=o", "--fromat=hf"], "--fromat", "--format"),
    (["launch", "tpu", "--name=n", "--zone=z", "--accelerator_type=v3-8", "--dry_rn"], "--dry_rn", "--dry_run"),
    (["launch", "dataflow", "--dry_run", "--reigon=r"], "--reigon", "--region"),
])
def test_every_subcommand_names_the_misspelled_flag_and_the_closest(argv, wrong, meant, capsys):
    code, err = _run(argv, capsys)
    assert code == 2
    assert f"unknown flag {wrong} (did you mean {meant}?)" in err, err


def test_vocab_sampling_job_rejects_what_beam_does_not_know(tmp_path, capsys):
    """With --sample_sentences the other flags go to Beam's PipelineOptions: a typo among them is an error
    before any work (no output folder), a real Beam flag is not."""
    base = ["vocab", f"--input_file={tmp_path / 'none.txt'}", f"--output_dir={tmp_path / 'v'}", "--vocab_size=100",
            "--sample_sentences=10"]
    code, err = _run(base + ["--runnr=DirectRunner"], capsys)
    assert code == 2 and "unknown flag --runnr (did you mean --runner?)" in err, err
    assert not (tmp_path / "v").exists()
    from vocab import cli as vocab_cli
    parser = vocab_cli._train_parser()  # pylint: disable=protected-access
    _, rest = parser.parse_known_args(base[1:] + ["--runner=DirectRunner", "--direct_num_workers=2"])
    assert flaglib.beam_unknown_args_message(rest, parser) is None


def test_train_names_the_closest_flag(monkeypatch, capsys):
    """`bertbeam train` parses its flags itself; TensorFlow is not loaded for this test."""
    from training import input_pipeline
    monkeypatch.setattr(input_pipeline, "tf_module", lambda: None)
    code, err = _run(["train", "--pretrain_dta=x"], capsys)
    assert code == 2
    assert "unknown flag --pretrain_dta (did you mean --pretrain_data?)" in err


def test_demo_rejects_a_misspelled_flag_before_any_work(tmp_path, capsys):
    """`./run_local.sh demo --dupe_factr 3`: the demo's other flags go to the build's Beam options."""
    from pipeline import demo
    with pytest.raises(SystemExit) as e:
        demo.main(["--output_dir", str(tmp_path / "demo"), "--dupe_factr", "3"])
    assert e.value.code == 2
    assert "unknown flag --dupe_factr (did you mean --dupe_factor?)" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()
