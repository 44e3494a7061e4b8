"""The two shuffle paths (run files vs the runner's GroupByKey) give identical bytes; the build graph has no side
inputs or multi-output steps; remote-runner checks, input discovery in the pipeline, temp-file names."""
import gzip
import io
import random

import numpy as np
import pytest

from pipeline import build
from transforms import corpus_reader, fileio, keys, spill


def _argv(corpus, vocab, out, *extra):
    return [f"--input_file={corpus}", f"--vocab_file={vocab}", f"--output_dir={out}", "--dupe_factor=2",
            "--do_whole_word_mask", "--max_seq_length=64,256", "--max_predictions_per_seq=10,38", "--num_shards=3",
            "--input_split_mb=0.1", "--random_next_bucket_size=16", *extra]


def _files(out):
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _shards(out):
    return {k: v for k, v in _files(out).items() if "/train-" in k}


@pytest.fixture(scope="module")
def local_files_build(tmp_path_factory, demo_corpus, demo_vocab):
    out = tmp_path_factory.mktemp("local") / "out"
    manifests = build.run_all(_argv(demo_corpus, demo_vocab, out, "--shuffle=local_files"))
    assert manifests[0]["input"]["ranges"] > 1 and build.LAST_RUN_COUNTERS["buckets"] > 1
    return manifests, _shards(out)


def _same(manifests, ref):
    for m, r in zip(manifests, ref):
        for key in ("counts", "documents", "sentences", "tokens", "shards", "input"):
            assert m[key] == r[key], key


def test_runner_shuffle_is_byte_identical_to_local_files(tmp_path, demo_corpus, demo_vocab, local_files_build):
    ref_manifests, ref_shards = local_files_build
    out = tmp_path / "out"
    manifests = build.run_all(_argv(demo_corpus, demo_vocab, out, "--shuffle=runner"))
    assert _shards(out) == ref_shards and len(ref_shards) == 6
    _same(manifests, ref_manifests)
    assert [m["shuffle"] for m in manifests] == ["runner", "runner"]
    # No intermediate files: only the shards, manifests and markers.
    names = sorted(_files(out))
    assert names == sorted([*ref_shards, "seq64/manifest.json", "seq64/_SUCCESS", "seq256/manifest.json",
                            "seq256/_SUCCESS"])


def test_checks_and_input_list_in_the_pipeline_give_the_same_bytes(tmp_path, demo_corpus, demo_vocab,
                                                                    local_files_build, monkeypatch):
    """Content sniffing on the workers (as for a remote runner or many inputs) and the input list passed
    through a file (as for thousands of inputs) change nothing; gzip found by content, not by name, also
    when the launcher cut the unnamed gzip file into ranges."""
    ref_manifests, ref_shards = local_files_build
    packed = tmp_path / "corpus_no_suffix"
    packed.write_bytes(gzip.compress(demo_corpus.read_bytes(), mtime=0))
    monkeypatch.setattr(build, "SNIFF_ON_LAUNCHER_MAX_FILES", 0)
    for source, shuffle, inline in ((demo_corpus, "runner", 0), (demo_corpus, "local_files", 5000),
                                    (packed, "local_files", 5000), (packed, "runner", 0)):
        monkeypatch.setattr(build, "INLINE_RANGES_MAX", inline)
        out = tmp_path / f"out_{source.name}_{shuffle}"
        manifests = build.run_all(_argv(source, demo_vocab, out, f"--shuffle={shuffle}"))
        if source == demo_corpus:
            assert _shards(out) == ref_shards
        else:  # one gzip range instead of four: same documents, other buckets; same counts
            assert manifests[0]["input"]["ranges"] == 1
            assert manifests[0]["documents"] == ref_manifests[0]["documents"]
        assert not (out / "seq64" / "_bertbeam_tmp").exists()


def test_bad_input_found_on_the_workers_fails_the_job_naming_the_file(tmp_path, demo_vocab, monkeypatch):
    fake = tmp_path / "plain.txt.gz"
    fake.write_text("not gzip\n\nat all\n")
    monkeypatch.setattr(build, "SNIFF_ON_LAUNCHER_MAX_FILES", 0)
    with pytest.raises(Exception, match=r"plain.txt.gz ends in .gz but is not gzip data"):
        build.run_all(_argv(fake, demo_vocab, tmp_path / "out", "--shuffle=runner"))
    assert not (tmp_path / "out" / "seq64" / "_SUCCESS").exists()


def test_build_graph_has_no_side_inputs_multi_outputs_or_partition(tmp_path, demo_corpus, demo_vocab):
    import apache_beam as beam
    from apache_beam.pipeline import PipelineVisitor
    from transforms.beam_build import BuildPretrainingData

    args, _ = build.parse_args(_argv(demo_corpus, demo_vocab, tmp_path / "o"))
    plans = [build.make_plan(one, 2) for one in build.per_length_args(args)]
    seen = []

    class Visitor(PipelineVisitor):
        def visit_transform(self, node):
            seen.append(node)

        def enter_composite_transform(self, node):
            seen.append(node)

    for shuffle in ("runner", "local_files"):
        p = beam.Pipeline()
        _ = p | beam.Create([]) | BuildPretrainingData(plans, [{}, {}], 0.0, shuffle)
        p.visit(Visitor())
    assert seen
    for node in seen:
        assert not node.side_inputs, node.full_label
        assert len(node.outputs) <= 1, node.full_label
        assert not isinstance(node.transform, beam.Partition), node.full_label


def test_slices_sorted_in_memory_equal_the_run_file_merge(tmp_path):
    rng = random.Random(1)
    items = [(rng.getrandbits(64), bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))) for _ in range(2000)]
    num_shards, cuts = 3, sorted(rng.sample(range(1, len(items)), 7))
    segments, blobs = {}, {}
    for n, (a, b) in enumerate(zip([0] + cuts, cuts + [len(items)])):
        part = items[a:b]
        ks = np.array([k for k, _ in part], dtype=np.uint64)
        shards = np.array([keys.shard_of(int(k), num_shards) for k in ks], dtype=np.int64)
        order = np.lexsort((ks, shards))
        data, index = spill.encode_run(shards[order], ks[order], [part[i][1] for i in order])
        path = tmp_path / f"run{n}"
        path.write_bytes(data)
        for shard, (offset, length, count) in index.items():
            segments.setdefault(shard, []).append((str(path), offset, length, count))
        for shard, (blob, count) in spill.split_run(data, index).items():
            blobs.setdefault(shard, []).append((blob, count))
    for shard in range(num_shards):
        merged = list(spill.merge_segments(lambda p: io.open(p, "rb"), segments[shard]))
        assert spill.sort_blobs(reversed(blobs[shard])) == merged
        assert merged == [r for k, r in sorted(items) if keys.shard_of(k, num_shards) == shard]
    blob, count = blobs[0][0]
    with pytest.raises(IOError, match="truncated"):
        spill.sort_blobs([(blob[:-1], count)])


def test_temp_files_are_hidden_from_shard_globs_and_swept(tmp_path):
    target = str(tmp_path / "train-00000-of-00002.tfrecord")
    tmp = fileio.temp_path_for(target)
    name = tmp.rsplit("/", 1)[-1]
    assert name.startswith(".tmp-") and not name.startswith("train-") and fileio.is_temp_name(name)
    assert build._is_own_output(name) and build._is_own_output("seq128/" + name)
    open(tmp, "wb").close()
    fileio.write_atomic(target, b"x")
    assert sorted(p.name for p in tmp_path.glob("train-*")) == ["train-00000-of-00002.tfrecord"]
    assert fileio.delete_stray_temps(str(tmp_path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["train-00000-of-00002.tfrecord"]


def test_non_local_runner_refuses_local_paths_before_submission(tmp_path, demo_corpus, demo_vocab):
    argv = _argv(demo_corpus, demo_vocab, tmp_path / "out", "--runner=DataflowRunner")
    with pytest.raises(build.FlagError, match=r"--input_file=.*local path.*--runner=DataflowRunner.*--allow_local_paths"):
        build.run_all(argv)
    assert not (tmp_path / "out").exists()
    args, _ = build.parse_args(_argv("gs://b/c.txt", demo_vocab, "gs://b/out"))
    with pytest.raises(build.FlagError, match=r"--vocab_file=.*local path"):
        build.check_remote_paths(args, "DataflowRunner")
    args.vocab_file = "gs://b/vocab.txt"
    build.check_remote_paths(args, "DataflowRunner")
    build.check_remote_paths(build.parse_args(argv + ["--allow_local_paths"])[0], "DaskRunner")
    build.check_remote_paths(build.parse_args(argv)[0], "DirectRunner")


def test_shuffle_auto_keeps_records_out_of_in_memory_groupbykeys():
    embed = {"job_endpoint": "embed"}
    assert build.resolve_shuffle("auto", "DirectRunner") == "local_files"
    assert build.resolve_shuffle("auto", "DataflowRunner", {}, "gs://b/out") == "runner"
    # Beam's DaskRunner and the embedded portable job server hold grouped values in memory: run files when every
    # worker sees the output folder, the runner's GroupByKey (with a warning) only for object storage.
    assert build.resolve_shuffle("auto", "DaskRunner", {}, "/mnt/shared/out") == "local_files"
    assert build.resolve_shuffle("auto", "DaskRunner", {}, "gs://b/out") == "runner"
    assert build.resolve_shuffle("auto", "PortableRunner", embed, "/mnt/shared/out") == "local_files"
    assert build.resolve_shuffle("auto", "PortableRunner", {"job_endpoint": "flink:8099"}, "/mnt/out") == "runner"
    assert build.resolve_shuffle("runner", "DirectRunner") == "runner"
    assert "local_files" in build.in_memory_shuffle_warning("runner", "DaskRunner", {})
    assert build.in_memory_shuffle_warning("runner", "DataflowRunner", {}) is None
    assert build.in_memory_shuffle_warning("local_files", "DaskRunner", {}) is None


def test_one_warning_names_the_biggest_gzip_over_the_split_size():
    files = [corpus_reader.InputFile("gs://b/a.gz", "a.gz", 300 << 20, True),
             corpus_reader.InputFile("gs://b/b.gz", "b.gz", 900 << 20, True),
             corpus_reader.InputFile("gs://b/c.txt", "c.txt", 900 << 20, False)]
    warning = build.gzip_split_warning(files, 64 << 20)
    assert "gs://b/b.gz" in warning and "(and 1 more)" in warning and "--input_split_mb=64" in warning
    assert build.gzip_split_warning(files[2:], 64 << 20) is None


def test_input_list_round_trips(tmp_path):
    files = [corpus_reader.InputFile(f"gs://b/{i}.txt", f"{i}.txt", i, i % 2 == 0) for i in range(5)]
    path = tmp_path / "inputs.jsonl"
    path.write_bytes(corpus_reader.encode_input_list(files))
    assert list(corpus_reader.read_input_list(str(path), fileio.open_read)) == files


def test_runner_shuffle_caps_the_shard_size(tmp_path, demo_corpus, demo_vocab):
    with pytest.raises(build.FlagError, match=r"--target_shard_mb=2048.*at most 1024"):
        build.run_all(_argv(demo_corpus, demo_vocab, tmp_path / "o", "--shuffle=runner", "--target_shard_mb=2048"))
    args, _ = build.parse_args(_argv(demo_corpus, demo_vocab, tmp_path / "o"))
    (one, _) = build.per_length_args(args)
    big = [corpus_reader.InputFile("gs://b/a.txt", "a.txt", 10 << 30, False)]  # 10 GiB x 2 copies x 2 bytes
    assert "about 40960 MB per shard" in build.shard_size_warning(one, big, 1)
    assert build.shard_size_warning(one, big, 64) is None


def test_automatic_range_size_depends_on_the_corpus_only():
    def files(*sizes_mb, gz=False):
        return [corpus_reader.InputFile(f"/c/{i}", f"{i}", int(mb * (1 << 20)), gz) for i, mb in enumerate(sizes_mb)]
    mb = 1 << 20
    assert build.choose_split_bytes(0, files(0.9)) == mb  # at least 1 MB: buckets (1 MB of text) stay whole
    assert build.choose_split_bytes(0, files(17.7)) == mb  # an 18 MB corpus is 18 ranges, not one
    assert build.choose_split_bytes(0, files(100, 100)) == int(200 / 64 * mb)
    assert build.choose_split_bytes(0, files(110_000)) == 64 * mb  # a full corpus: 64 MB ranges
    assert build.choose_split_bytes(0, files(30, gz=True)) == int(90 / 64 * mb)  # gzip counts as 3x its size
    assert build.choose_split_bytes(0.1, files(110_000)) == int(0.1 * mb)  # an explicit size wins


@pytest.mark.dataflow  # runs in both of .ci/run's installs: without the extra and with it
def test_gs_paths_and_dataflow_without_the_google_cloud_libraries_fail_naming_the_extra(tmp_path, demo_corpus,
                                                                                        demo_vocab):
    from transforms import fileio
    try:
        from apache_beam.io.gcp import gcsfilesystem  # pylint: disable=unused-import
        has_gcs = True
    except ImportError:
        has_gcs = False
    args, _ = build.parse_args(_argv("gs://b/c.txt", demo_vocab, tmp_path / "out"))
    if has_gcs:  # a `dataflow` install: the check lets gs:// through
        assert fileio.remote_support_problem("gs://b/c.txt") == ""
        build.check_remote_support(args, "DirectRunner")
    else:  # the default install: an error naming the flag and the extra, before anything runs
        with pytest.raises(build.FlagError, match=r"--input_file=gs://b/c.txt: gs:// paths .*bertbeam\[dataflow\]"):
            build.check_remote_support(args, "DirectRunner")
        with pytest.raises(build.FlagError, match=r"--runner=DataflowRunner needs .*bertbeam\[dataflow\]"):
            build.run_all(_argv(demo_corpus, demo_vocab, tmp_path / "out", "--runner=DataflowRunner",
                                "--allow_local_paths"))
        assert not (tmp_path / "out").exists()
    assert fileio.remote_support_problem(str(demo_corpus)) == ""
    build.check_remote_support(build.parse_args(_argv(demo_corpus, demo_vocab, tmp_path / "out"))[0], "DirectRunner")


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_shards_no_record_reaches_are_written_empty_on_both_paths(tmp_path, demo_vocab, compression):
    """Eight documents of two sentences and 40 shards: most shards get no record and are written empty (by the
    manifest step), with the same bytes on both paths; one sentence and no other document: every shard empty."""
    from transforms.tfrecord_io import read_records_from_path
    few = tmp_path / "few.txt"
    few.write_text("".join(f"Document {d} says one thing.\nThen it says another.\n\n" for d in range(8)))
    single = tmp_path / "single.txt"
    single.write_text("The only sentence of the only document.\n")
    for corpus, shards in ((few, 40), (single, 3)):
        outs = {}
        for shuffle in ("local_files", "runner"):
            out = tmp_path / f"{corpus.stem}_{shuffle}_{compression}"
            m = build.run([f"--input_file={corpus}", f"--vocab_file={demo_vocab}", f"--output_dir={out}",
                           "--dupe_factor=1", f"--num_shards={shards}", f"--shuffle={shuffle}",
                           f"--compression={compression}"])
            assert [s["path"].split("-")[1] for s in m["shards"]] == [f"{i:05d}" for i in range(shards)]
            counts = [len(list(read_records_from_path(str(out / s["path"]), m["compression"]))) for s in m["shards"]]
            assert counts == [s["num_instances"] for s in m["shards"]]
            assert sum(counts) == m["counts"]["train"]["num_instances"]
            assert counts.count(0) >= (shards - 16 if corpus is few else shards)
            outs[shuffle] = {p.name: p.read_bytes() for p in sorted(out.glob("train-*"))}
        assert outs["local_files"] == outs["runner"] and len(outs["runner"]) == shards
