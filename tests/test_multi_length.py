"""One read, several sequence lengths: each output equals the single-length build with the same flags."""
import pytest

from pipeline import build


def _argv(corpus, vocab, out, lengths, preds, dupes):
    return [f"--input_file={corpus}", f"--vocab_file={vocab}", f"--output_dir={out}", "--do_whole_word_mask",
            f"--max_seq_length={lengths}", f"--max_predictions_per_seq={preds}", f"--dupe_factor={dupes}",
            "--num_shards=2"]


def test_multi_length_reads_once_and_matches_single_runs(tmp_path, demo_corpus, demo_vocab):
    manifests = build.run_all(_argv(demo_corpus, demo_vocab, tmp_path / "multi", "64,256", "10,38", "3,2"))
    counters = dict(build.LAST_RUN_COUNTERS)
    assert [m["max_seq_length"] for m in manifests] == [64, 256]
    assert [m["dupe_factor"] for m in manifests] == [3, 2]
    n_docs = manifests[0]["documents"]["read"]
    # Documents are read (and tokenized) once for both lengths, not once per length.
    assert counters["documents_read"] == n_docs
    for length, pred, dupe in ((64, 10, 3), (256, 38, 2)):
        single = tmp_path / f"single{length}"
        build.run(_argv(demo_corpus, demo_vocab, single, length, pred, dupe))
        multi = tmp_path / "multi" / f"seq{length}"
        for shard in sorted(single.glob("train-*")):
            assert (multi / shard.name).read_bytes() == shard.read_bytes()


def test_mismatched_list_lengths_name_the_flag(tmp_path, demo_corpus, demo_vocab):
    with pytest.raises(build.FlagError, match="--dupe_factor=1,2,3"):
        build.run_all(_argv(demo_corpus, demo_vocab, tmp_path / "x", "64,128", "10", "1,2,3"))
