"""SOP + n-gram statistics against google-research/albert's on en_books_dev (needs ../shared)."""
import contextlib
import io
import json
import runpy
import sys
from pathlib import Path

import pytest

from pipeline import build

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
REF = SHARED / "reference" / "albert_sop_stats.json"

# ../shared/reference/README.md tolerances, except frac_short_lt_half (see below).
TOLERANCE = {"masked_per_token": 0.003, "is_random_next_frac": 0.02, "mask_token_frac": 0.01,
             "keep_frac": 0.01, "random_frac": 0.01, "segA_frac_mean": 0.02,
             # Short instances come mostly from the ~10 % of document copies drawn a short target, so
             # this figure varies a lot from seed to seed: over 24 seeds, both this pipeline and a
             # line-by-line transcription of ALBERT's loop give 0.119 ± 0.014 (mean ± sd), and the
             # reference's one run (0.0994) lies 1.4 sd below that mean. 0.035 is 2.5 sd.
             "frac_short_lt_half": 0.035}
RELATIVE = {"len_mean": 0.02, "instances": 0.05, "masked_mean": 0.03}


def _record_stats(vocab: Path, pattern: str) -> dict:
    """Runs ../shared/tools/bert_record_stats.py in this process (TensorFlow is already loaded)."""
    out = io.StringIO()
    argv = sys.argv
    sys.argv = ["bert_record_stats.py", str(vocab), pattern]
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(SHARED / "tools" / "bert_record_stats.py"), run_name="__main__")
    finally:
        sys.argv = argv
    return json.loads(out.getvalue().strip().splitlines()[-1])


@pytest.mark.skipif(not REF.is_file(), reason="../shared is not present")
def test_sop_ngram3_statistics_match_albert(tmp_path):
    vocab = SHARED / "data" / "vocab" / "bert_base_uncased" / "vocab.txt"
    manifest = build.run([f"--input_file={SHARED / 'data' / 'corpora' / 'en_books_dev.txt'}",
                          f"--vocab_file={vocab}", f"--output_dir={tmp_path}", "--pairing=sop",
                          "--max_ngram_size=3", "--favor_shorter_ngram", "--do_whole_word_mask",
                          "--max_seq_length=128", "--max_predictions_per_seq=20", "--masked_lm_prob=0.15",
                          "--random_seed=12345", "--dupe_factor=5", "--do_lower_case=True"])
    ours = _record_stats(vocab, str(tmp_path / "train-*"))
    ref = json.loads(REF.read_text())["en_books_dev.seq128.sop_ngram3"]
    bad = [f"{k}: {ours[k]} vs {ref[k]}" for k, tol in TOLERANCE.items() if abs(ours[k] - ref[k]) > tol]
    bad += [f"{k}: {ours[k]} vs {ref[k]}" for k, tol in RELATIVE.items() if abs(ours[k] - ref[k]) > tol * ref[k]]
    bad += [f"{k}: {ours[k]} vs {ref[k]}" for k in ("starts_with_cls_frac", "two_seps_frac", "len_max")
            if ours[k] != ref[k]]
    assert bad == [], bad
    assert ours["instances"] == manifest["counts"]["train"]["num_instances"]
