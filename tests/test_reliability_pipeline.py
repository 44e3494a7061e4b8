"""End to end: a corpus salted with every bad input reconciles; killed, repeated and re-run builds give
the same bytes and never leave output that looks complete."""
import gzip
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import build
from pipeline.manifest import reconcile

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _argv(corpus, vocab, out, *extra):
    return [f"--input_file={corpus}", f"--vocab_file={vocab}", f"--output_dir={out}", "--dupe_factor=1", *extra]


def _shard_bytes(out: Path):
    return {p.name: p.read_bytes() for p in sorted(out.glob("train-*"))}


def _model_doc_count(data: bytes) -> int:
    """Blank-line separated documents, stated independently of the reader (LF/CRLF/CR ends, strip())."""
    count, in_doc = 0, False
    for raw in re.split(rb"\r\n|\r|\n", data.removeprefix(b"\xef\xbb\xbf")):
        if raw.decode("utf-8", errors="replace").strip():
            count += not in_doc
            in_doc = True
        else:
            in_doc = False
    return count


def _salt(folder: Path, real_text: bytes) -> dict:
    """Writes one file per bad input next to real text; returns {name: documents the reader will meet}."""
    files = {
        "real.txt": real_text,
        "latin1.txt": "Caf\u00e9 au lait is served here.\nThe na\u00efve man ordered one.\n\n".encode("latin-1"),
        "controls.txt": b"Tabs\tand \x00NUL bytes and \x07 bells.\nA form\x0c feed.\n\n\x00\x01\x02\n\x03\x1b\n\n",
        "bom_crlf.txt": b"\xef\xbb\xbfWindows line ends here.\r\nSecond line.\r\n\r\nAnother doc.\r\nIts end.\r\n",
        "lone_cr.txt": b"Old Mac line ends.\rSecond line.\r\rNext document.\rLast line.\r",
        "empty.txt": b"",
        "one_sentence.txt": b"A document of exactly one sentence.\n",
        "all_unknown.txt": "\U00010330\U00010339\U0001033D \U00010343\U00010330\n\U00010331\U00010339\n".encode(),
        "hidden_gzip.txt": gzip.compress(b"This file is gzip without the extension.\nIt reads fine.\n\n"
                                         b"A second gzip document.\nWith two lines.\n"),
        "long_line.txt": b"Before the long line.\nStill before.\n\n" + b"word " * 300_000
                         + b"\nsame document.\n\nAfter the long line.\nThe end.\n",
    }
    whole = b"".join(f"Document {i} opens here.\nIt has a second line.\n\n".encode() for i in range(400))
    gz = gzip.compress(whole)
    files["truncated.gz"] = gz[: len(gz) * 2 // 3]
    for name, data in files.items():
        (folder / name).write_bytes(data)
    expected = {name: _model_doc_count(data) for name, data in files.items()
                if not name.endswith(".gz") and name != "hidden_gzip.txt"}
    expected["hidden_gzip.txt"] = 2
    return expected


def test_salted_corpus_reconciles_in_multi_processing_mode(tmp_path):
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared is not present")
    real = (SHARED / "data/corpora/en_books_dev.txt").read_bytes()[:150_000]
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    expected = _salt(corpus, real)
    out = tmp_path / "out"
    m = build.run(_argv(f"{corpus}/*", SHARED / "data/vocab/bert_base_uncased/vocab.txt", out,
                        "--num_shards=2", "--direct_running_mode=multi_processing", "--direct_num_workers=2",
                        "--input_split_mb=0.05"))
    docs, inp = m["documents"], m["input"]
    # Every document met is accounted for: used, or dropped with a reason.
    assert reconcile(m) is None, reconcile(m)
    assert m["reconciliation"]["ok"]
    dropped = docs["dropped"]
    assert dropped["line_too_long"] == 1
    assert dropped["all_unknown"] == 1
    assert dropped["no_tokens"] == 1  # the document of control characters only
    assert inp["damaged_files"] == {"truncated.gz": "gzip_truncated"}
    assert inp["empty_files"] == 1 and inp["files"] == 11
    assert inp["lines_invalid_utf8"] == 2 and inp["bom_removed"] == 1 and inp["lines_too_long"] == 1
    assert inp["lines_dropped"]["line_too_long"] == 2  # the long line and the line after it
    # The truncated gzip (one member, no checksum reached) gives some of its 400 documents to the reader, and
    # every one of them is dropped: none of its text is verified. Every other file gives all of its documents.
    from_truncated = docs["read"] - sum(expected.values())
    assert 100 < from_truncated < 400
    assert dropped["gzip_damaged"] == from_truncated
    assert 2 * from_truncated - 1 <= inp["lines_dropped"]["gzip_damaged"] <= 2 * from_truncated
    assert docs["used"] == docs["read"] - sum(dropped.values())
    assert m["counts"]["train"]["num_instances"] == sum(s["num_instances"] for s in m["shards"]) > 0
    assert (out / "_SUCCESS").exists() and not (out / "_bertbeam_tmp").exists()
    # one_sentence.txt is a range (and so a random-next bucket) of its own: with no other document to draw
    # from it is never paired with itself; its one chunk is dropped and counted instead.
    assert m["pairing_stats"]["chunks_dropped_no_pair"] == 1
    if "sentences" not in m["reconciliation"]["checked"]:
        pytest.skip("documents reconcile; sentences/tokens need the sentences_read/tokens_read counters "
                    "from transforms/bucket_builder.py (see the H7 report)")
    sent, tok = m["sentences"], m["tokens"]
    assert sent["read"] == sent["used"] + sent["empty_after_tokenization"] + sum(sent["dropped"].values())
    assert tok["read"] == tok["in_used_documents"] + sum(tok["dropped"].values())
    # dupe_factor 1: every token read reached an instance, or was dropped or lost for a named reason.
    assert tok["read"] == tok["used"] + sum(tok["dropped"].values()) + sum(tok["lost"].values())
    assert tok["lost"]["no_pair"] > 0 and tok["lost"]["chunk_end_truncation"] > 0
    assert inp["lines_read"] == sent["read"] + sum(inp["lines_dropped"].values())


def test_damaged_gzip_adds_no_byte_beyond_its_verified_members(tmp_path):
    """64 bytes overwritten in the second member of a gzip: the build equals one over the first member's text
    alone (same file name, so same document keys), and the manifest counts the second member's documents."""
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared is not present")
    real = (SHARED / "data/corpora/en_books_dev.txt").read_bytes()[:400_000]
    cut = real.index(b"\n\n", len(real) // 3) + 2
    damaged = bytearray(gzip.compress(real[:cut]) + gzip.compress(real[cut:]))
    spot = len(damaged) * 3 // 4
    damaged[spot: spot + 64] = bytes(range(100, 164))
    (tmp_path / "damaged").mkdir()
    (tmp_path / "clean").mkdir()
    (tmp_path / "damaged/books.txt").write_bytes(bytes(damaged))
    (tmp_path / "clean/books.txt").write_bytes(real[:cut])
    vocab = SHARED / "data/vocab/bert_base_uncased/vocab.txt"
    got = build.run(_argv(tmp_path / "damaged/books.txt", vocab, tmp_path / "out_damaged", "--num_shards=2"))
    want = build.run(_argv(tmp_path / "clean/books.txt", vocab, tmp_path / "out_clean", "--num_shards=2"))
    assert _shard_bytes(tmp_path / "out_damaged") == _shard_bytes(tmp_path / "out_clean")
    assert got["input"]["damaged_files"] == {"books.txt": "gzip_corrupt"}
    after = _model_doc_count(real[cut:])
    assert got["documents"]["used"] == want["documents"]["used"] > 0
    # Every document of the damaged member the reader could still decode is read and dropped; the manifest
    # reconciles. Decoding stops where deflate fails, so at most all of the member's documents are counted.
    assert 0 < got["documents"]["dropped"]["gzip_damaged"] <= after + 1
    # Decoded garbage is read, counted and dropped: every invalid-UTF-8 line was in a dropped document.
    assert got["input"]["lines_invalid_utf8"] == got["input"]["lines_invalid_utf8_dropped"]
    assert reconcile(got) is None and got["reconciliation"]["ok"]


def test_one_document_corpus_never_pairs_a_document_with_itself(tmp_path, demo_vocab):
    corpus = tmp_path / "one.txt"
    corpus.write_text("".join(f"Sentence number {i} of the only document.\n" for i in range(40)))
    single = tmp_path / "single.txt"
    single.write_text("The only sentence of the only document.\n")
    out = tmp_path / "out"
    from transforms.example_codec import decode_example
    from transforms.tfrecord_io import read_records_from_path
    m = build.run(_argv(corpus, demo_vocab, out, "--num_shards=1", "--dupe_factor=3"))
    labels = [int(decode_example(r)["next_sentence_labels"][0])
              for r in read_records_from_path(str(out / "train-00000-of-00001.tfrecord"))]
    # No other document to draw from: every pair is the actual next segment (label 0), and it is counted.
    assert labels and set(labels) == {0}
    assert m["pairing_stats"]["random_next_unavailable"] > 0
    m = build.run(_argv(single, demo_vocab, tmp_path / "out1", "--num_shards=1"))
    # One sentence and no other document: nothing can be paired; the chunk is dropped and counted.
    assert m["counts"]["train"]["num_instances"] == 0
    assert m["pairing_stats"]["chunks_dropped_no_pair"] == 1 and m["documents"]["used"] == 1


def test_smallest_max_seq_length_the_pairing_allows_builds(tmp_path, demo_corpus, demo_vocab):
    m = build.run(_argv(demo_corpus, demo_vocab, tmp_path / "o", "--max_seq_length=5",
                        "--max_predictions_per_seq=1", "--num_shards=1"))
    assert m["counts"]["train"]["num_instances"] > 0
    # The counts balance; the only problem is the loud note that most tokens never reached an instance.
    from pipeline.manifest import loss_warning
    assert m["reconciliation"]["problems"] == [loss_warning(m)] and "reached an instance" in loss_warning(m)


@pytest.fixture(scope="module")
def reference_build(tmp_path_factory, demo_corpus, demo_vocab):
    """A clean in-memory build every other build below must equal byte for byte."""
    out = tmp_path_factory.mktemp("ref") / "out"
    m = build.run(_argv(demo_corpus, demo_vocab, out, "--num_shards=2", "--dupe_factor=2",
                        "--random_next_bucket_size=8"))
    return m, _shard_bytes(out)


def _same_counts(a, b):
    for key in ("documents", "sentences", "tokens", "counts", "shards", "input"):
        assert a[key] == b[key], key


def test_killed_run_leaves_nothing_complete_and_overwrite_rebuilds_identically(
        tmp_path, demo_corpus, demo_vocab, reference_build):
    ref_manifest, ref_shards = reference_build
    out = tmp_path / "out"
    argv = _argv(demo_corpus, demo_vocab, out, "--num_shards=2", "--dupe_factor=2", "--random_next_bucket_size=8")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.build", *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp_runs = out / "_bertbeam_tmp"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if tmp_runs.is_dir() and any(p.name.startswith("run-") for p in tmp_runs.rglob("*")):
                proc.kill()
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode < 0, "the build finished before it could be killed: the test proved nothing"
    assert not (out / "manifest.json").exists() and not (out / "_SUCCESS").exists()
    with pytest.raises(build.FlagError, match="incomplete earlier run"):
        build.run(argv)
    m = build.run([*argv, "--overwrite"])
    assert _shard_bytes(out) == ref_shards
    _same_counts(m, ref_manifest)
    assert not tmp_runs.exists()


def test_overwrite_with_another_shard_count_leaves_no_stale_shards(tmp_path, demo_corpus, demo_vocab,
                                                                    reference_build):
    _, ref_shards = reference_build
    out = tmp_path / "out"
    argv = _argv(demo_corpus, demo_vocab, out, "--dupe_factor=2", "--random_next_bucket_size=8")
    build.run([*argv, "--num_shards=5"])
    assert len(list(out.glob("train-*-of-00005.tfrecord"))) == 5
    m = build.run([*argv, "--num_shards=2", "--overwrite"])
    assert _shard_bytes(out) == ref_shards
    assert sorted(p.name for p in out.iterdir()) == ["_SUCCESS", "manifest.json", *sorted(ref_shards)]
    assert [s["path"] for s in m["shards"]] == sorted(ref_shards)


def test_re_executed_bundles_change_nothing(tmp_path, demo_corpus, demo_vocab, reference_build):
    """Beam's --direct_runner_bundle_repeat replays every bundle (side effects included: run files,
    shard files and the manifest are written again); the output must not change."""
    ref_manifest, ref_shards = reference_build
    out = tmp_path / "out"
    m = build.run(_argv(demo_corpus, demo_vocab, out, "--num_shards=2", "--dupe_factor=2",
                        "--random_next_bucket_size=8", "--direct_runner_bundle_repeat=1"))
    assert _shard_bytes(out) == ref_shards
    _same_counts(m, ref_manifest)
    assert json.loads((out / "manifest.json").read_text())["shards"] == ref_manifest["shards"]
    assert not (out / "_bertbeam_tmp").exists() and not list(out.glob("*.tmp-*")) and not list(out.glob(".tmp-*"))
