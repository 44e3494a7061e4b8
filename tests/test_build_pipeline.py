"""End-to-end `bertbeam build`: determinism across runner modes, manifest contents, Beam wiring."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import build
from pipeline.manifest import reconcile


def _argv(corpus, vocab, out, *extra):
    return [f"--input_file={corpus}", f"--vocab_file={vocab}", f"--output_dir={out}", "--dupe_factor=2",
            "--do_whole_word_mask", "--max_seq_length=64", "--max_predictions_per_seq=10", "--num_shards=3",
            *extra]


def _shard_bytes(out: Path):
    return {p.name: p.read_bytes() for p in sorted(out.glob("train-*"))}


def test_byte_identical_across_runner_modes_and_reruns(tmp_path, demo_corpus, demo_vocab):
    outs = {}
    for name, extra in {
        "in_memory": ["--direct_running_mode=in_memory"],
        "multi_processing": ["--direct_running_mode=multi_processing", "--direct_num_workers=2"],
        "rerun": ["--direct_running_mode=in_memory", "--random_next_bucket_size=1000"],
    }.items():
        out = tmp_path / name
        manifest = build.run(_argv(demo_corpus, demo_vocab, out, *extra))
        assert (out / "_SUCCESS").exists()
        assert reconcile(manifest) is None
        outs[name] = _shard_bytes(out)
    assert len(outs["in_memory"]) == 3
    assert outs["in_memory"] == outs["multi_processing"] == outs["rerun"]


def test_manifest_carries_seed_fields_and_counts(tmp_path, demo_corpus, demo_vocab):
    out = tmp_path / "out"
    manifest = build.run(_argv(demo_corpus, demo_vocab, out, "--random_seed=7"))
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["counts"] == manifest["counts"]
    for key in ("time_taken_min", "max_seq_length", "dupe_factor", "short_seq_prob", "max_predictions_per_seq",
                "random_seed", "masked_lm_prob", "do_whole_word_mask", "do_lower_case"):
        assert key in on_disk, key
    assert on_disk["random_seed"] == 7 and on_disk["max_seq_length"] == 64
    assert on_disk["vocab"]["size"] == len(demo_vocab.read_text().splitlines())
    assert len(on_disk["vocab"]["sha256"]) == 64
    total = sum(s["num_instances"] for s in on_disk["shards"])
    assert total == on_disk["counts"]["train"]["num_instances"] > 100
    # Every shard's count is what the file really holds.
    from transforms.tfrecord_io import read_records_from_path
    for shard in on_disk["shards"]:
        assert sum(1 for _ in read_records_from_path(str(out / shard["path"]))) == shard["num_instances"]
    assert not (out / "_bertbeam_tmp").exists()


def test_instances_are_shuffled_across_shards(tmp_path, demo_corpus, demo_vocab):
    """Consecutive records of a shard must not come from one document (global shuffle)."""
    from transforms.example_codec import decode_example
    from transforms.tfrecord_io import read_records_from_path
    out = tmp_path / "out"
    build.run(_argv(demo_corpus, demo_vocab, out, "--num_shards=1", "--masked_lm_prob=0.01",
                    "--max_predictions_per_seq=1"))
    records = list(read_records_from_path(str(next(out.glob("train-*")))))
    firsts = [tuple(decode_example(r)["input_ids"][1:4]) for r in records[:200]]
    # If grouped by document, neighbours would share most of their opening tokens; shuffled they rarely do.
    same = sum(a == b for a, b in zip(firsts, firsts[1:]))
    assert same < 20


def test_refuses_non_empty_output_without_overwrite(tmp_path, demo_corpus, demo_vocab):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train-00000-of-00009.tfrecord").write_bytes(b"stale")
    with pytest.raises(build.FlagError, match="not empty.*--overwrite"):
        build.run(_argv(demo_corpus, demo_vocab, out))
    build.run(_argv(demo_corpus, demo_vocab, out, "--overwrite"))
    assert not (out / "train-00000-of-00009.tfrecord").exists()
    assert len(list(out.glob("train-*-of-00003.tfrecord"))) == 3


@pytest.mark.parametrize("spelling,expected", [
    (["--do_lower_case"], True), (["--do_lower_case=True"], True), (["--do_lower_case=false"], False),
    (["--nodo_lower_case"], False), (["--do_lower_case", "False"], False), ([], None)])
def test_absl_boolean_spellings(spelling, expected):
    args, beam_args = build.parse_args(["--input_file=x", "--output_dir=y", "--vocab_file=v", *spelling,
                                        "--runner=DirectRunner"])
    assert args.do_lower_case is expected
    assert beam_args == ["--runner=DirectRunner"]


def test_beam_transform_with_test_pipeline(tmp_path, demo_corpus, demo_vocab):
    """BuildPretrainingData as a PTransform under TestPipeline, checked with assert_that."""
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that
    from transforms import corpus_reader
    from transforms.beam_build import BuildPretrainingData

    args, _ = build.parse_args(_argv(demo_corpus, demo_vocab, tmp_path / "tp"))
    build.resolve_vocabulary_flags(args)
    (args,) = build.per_length_args(args)
    inputs = build.discover_inputs(args.input_file)
    plan = build.make_plan(args, 2)
    build.prepare_output_dir(plan.output_dir, False)
    ranges = corpus_reader.split_ranges(inputs, 100_000)  # several ranges over one file
    assert len(ranges) > 1

    def check(manifests):
        (m,) = manifests
        assert m["documents"]["read"] == m["documents"]["used"] + sum(m["documents"]["dropped"].values())
        assert m["counts"]["train"]["num_instances"] == sum(s["num_instances"] for s in m["shards"]) > 0
        assert [s["path"] for s in m["shards"]] == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]

    with TestPipeline() as p:
        manifests = (p | beam.Create(ranges)
                     | BuildPretrainingData(plan, {"pairing": "nsp"}, 0.0))
        assert_that(manifests, check)


def test_cli_reports_bad_flag_by_name(tmp_path, demo_corpus, demo_vocab):
    proc = subprocess.run([sys.executable, "-m", "pipeline.build", *_argv(demo_corpus, demo_vocab, tmp_path / "o"),
                           "--masked_lm_prob=1.5"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "--masked_lm_prob=1.5" in proc.stderr


def test_bertbeam_inspect_decodes_instances(tmp_path, demo_corpus, demo_vocab):
    out = tmp_path / "out"
    build.run(_argv(demo_corpus, demo_vocab, out))
    proc = subprocess.run([sys.executable, "-m", "pipeline.main", "inspect", str(out), "--num_instances=2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "[CLS]" in proc.stdout and "masked_lm_positions" in proc.stdout
    assert "num_instances" in proc.stdout
