"""Bad flags, inputs and output folders fail before any work, with a message naming the flag or file."""
import gzip
import math

import pytest

from pipeline import build


def _argv(corpus, vocab, out, *extra):
    return [f"--input_file={corpus}", f"--vocab_file={vocab}", f"--output_dir={out}", "--dupe_factor=1", *extra]


def _fails(argv, pattern, out=None):
    """run() raises FlagError matching pattern, and (before any work) leaves no output folder behind."""
    with pytest.raises(build.FlagError, match=pattern):
        build.run(argv)
    if out is not None:
        assert not out.exists() or not any(p.name.startswith(("train-", "manifest", "_SUCCESS", "_bertbeam"))
                                           for p in out.rglob("*"))


@pytest.mark.parametrize("flag,pattern", [
    ("--masked_lm_prob=0", r"--masked_lm_prob=0.0: must be in \(0, 1\]"),
    ("--masked_lm_prob=1.5", r"--masked_lm_prob=1.5: must be in \(0, 1\]"),
    ("--masked_lm_prob=-0.1", r"--masked_lm_prob=-0.1"),
    ("--masked_lm_prob=nan", r"--masked_lm_prob=nan"),
    ("--dupe_factor=0", r"--dupe_factor=0: must be at least 1"),
    ("--dupe_factor=-3", r"--dupe_factor=-3: must be at least 1"),
    ("--max_seq_length=4", r"--max_seq_length=4: --pairing=nsp needs at least 5"),
    ("--short_seq_prob=2", r"--short_seq_prob=2.0"),
    ("--max_predictions_per_seq=0", r"--max_predictions_per_seq=0"),
])
def test_bad_flag_values_fail_before_work_naming_the_flag(tmp_path, demo_corpus, demo_vocab, flag, pattern):
    out = tmp_path / "out"
    _fails(_argv(demo_corpus, demo_vocab, out, flag), pattern, out)


def test_pairing_none_needs_three_positions(tmp_path, demo_corpus, demo_vocab):
    _fails(_argv(demo_corpus, demo_vocab, tmp_path / "o", "--pairing=none", "--max_seq_length=2",
                 "--max_predictions_per_seq=1"), r"--max_seq_length=2: --pairing=none needs at least 3")


@pytest.mark.parametrize("seq,prob,max_pred,warns", [
    (128, 0.15, 20, None), (512, 0.15, 80, None), (128, 0.15, 19, None), (128, 0.15, 10, "below"),
    (512, 0.15, 20, "below"), (128, 0.15, 60, "well above"), (128, 1.0, 128, None)])
def test_max_predictions_inconsistent_with_seq_length_times_prob_warns(seq, prob, max_pred, warns):
    args, _ = build.parse_args(["--input_file=x", "--output_dir=y", "--vocab_file=v", f"--max_seq_length={seq}",
                                f"--masked_lm_prob={prob}", f"--max_predictions_per_seq={max_pred}"])
    one = build.per_length_args(args)[0] if hasattr(build, "per_length_args") else args
    warnings = build.validate_args(one)
    if warns is None:
        assert warnings == []
    else:
        (w,) = warnings
        assert warns in w and f"--max_predictions_per_seq={max_pred}" in w
        assert f"{seq * prob:.1f}" in w and str(max(1, round(seq * prob))) in w


def test_inputs_that_cannot_be_read_fail_naming_the_file(tmp_path, demo_corpus, demo_vocab, monkeypatch):
    out = tmp_path / "out"
    _fails(_argv(tmp_path / "nowhere" / "*.txt", demo_vocab, out), r"matches no file", out)
    _fails(_argv(tmp_path / "missing.txt", demo_vocab, out), r"missing.txt: no such file", out)
    _fails(_argv(f"{demo_corpus},{tmp_path}/nope-*.txt", demo_vocab, out), r"nope-\*.txt' matches no file", out)
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("x\n")
    _fails(_argv(folder, demo_vocab, out), r"folder is a folder; give its files, e.g. --input_file=.*folder/\*", out)
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    _fails(_argv(empty, demo_vocab, out), r"all 1 matched file\(s\) are empty", out)
    # Unreadable (permission bits do not stop root, so the open is made to fail as it would for a user).
    from transforms import fileio
    real_open = fileio.open_read
    locked = tmp_path / "locked.txt"
    locked.write_text("text\n")

    def deny(path):
        if path.endswith("locked.txt"):
            raise PermissionError(13, "Permission denied", path)
        return real_open(path)
    monkeypatch.setattr(fileio, "open_read", deny)
    _fails(_argv(locked, demo_vocab, out), r"cannot read .*locked.txt: .*Permission denied", out)


def test_mislabelled_damaged_and_utf16_inputs_fail_naming_the_file(tmp_path, demo_corpus, demo_vocab):
    out = tmp_path / "out"
    fake = tmp_path / "plain.txt.gz"
    fake.write_bytes(b"not compressed\n")
    _fails(_argv(fake, demo_vocab, out), r"plain.txt.gz ends in .gz but is not gzip data", out)
    broken = tmp_path / "broken.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage that is no deflate stream")
    _fails(_argv(broken, demo_vocab, out), r"broken.gz: gzip data is damaged at its start", out)
    stub = tmp_path / "stub.gz"
    stub.write_bytes(gzip.compress(b"some text\n" * 100)[:10])  # header only
    _fails(_argv(stub, demo_vocab, out), r"stub.gz: gzip data is damaged at its start", out)
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("Hello world.\n".encode("utf-16"))
    _fails(_argv(utf16, demo_vocab, out), r"utf16.txt is UTF-16 or UTF-32 text.*iconv", out)


def test_partial_earlier_run_is_refused_then_cleaned_with_overwrite(tmp_path):
    out = tmp_path / "out"
    (out / "_bertbeam_tmp").mkdir(parents=True)
    (out / "_bertbeam_tmp" / "run-00ff.bin").write_bytes(b"half")
    (out / "train-00001-of-00004.tfrecord").write_bytes(b"stale")
    (out / ("train-00002-of-00004.tfrecord.tmp-" + "a" * 32)).write_bytes(b"partial")
    (out / "seq512").mkdir()
    (out / "seq512" / "train-00000-of-00002.tfrecord").write_bytes(b"stale")
    (out / "notes.md").write_text("mine")
    with pytest.raises(build.FlagError, match=r"is not empty .*incomplete earlier run \(no manifest.json/_SUCCESS"
                                              r".*pass --overwrite"):
        build.prepare_output_dir(str(out), False)
    build.prepare_output_dir(str(out), True)
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert left == ["notes.md"]  # everything a build wrote is gone, nothing else


def test_complete_earlier_dataset_is_named_as_such(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("train-00000-of-00001.tfrecord", "manifest.json", "_SUCCESS"):
        (out / name).write_bytes(b"")
    with pytest.raises(build.FlagError, match=r"complete earlier dataset; pass --overwrite"):
        build.prepare_output_dir(str(out), False)


def test_unwritable_output_location_fails_before_work(tmp_path, demo_corpus, demo_vocab):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    _fails(_argv(demo_corpus, demo_vocab, a_file / "out"), r"--output_dir=.*a_file/out cannot be written")
    _fails(_argv(demo_corpus, demo_vocab, a_file), r"--output_dir=.*a_file is a file, not a folder")


def test_cli_prints_error_and_exits_2(tmp_path, demo_corpus, demo_vocab, capsys):
    code = build.main(_argv(tmp_path / "missing.txt", demo_vocab, tmp_path / "o"))
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("bertbeam build: error: --input_file:") and "missing.txt: no such file" in err
    assert math.isnan(float("nan"))  # (nan is spelled as Python parses it: --masked_lm_prob=nan above)
