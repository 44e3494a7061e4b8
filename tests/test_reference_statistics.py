"""Statistics of our output against google-research/bert's on the shared corpora (needs ../shared)."""
import json
import subprocess
import sys

import pytest

from pipeline import build

# Tolerances from ../shared/reference/README.md.
TOLERANCE = {"masked_per_token": 0.003, "is_random_next_frac": 0.02, "frac_short_lt_half": 0.02,
             "mask_token_frac": 0.01, "keep_frac": 0.01, "random_frac": 0.01}
RELATIVE = {"len_mean": 0.02, "instances": 0.05}

CASES = {
    "en_books_dev.seq128": ("corpora/en_books_dev.txt", "bert_base_uncased", ["--max_seq_length=128",
                            "--max_predictions_per_seq=20", "--do_lower_case=True"]),
    "en_books_dev.seq512": ("corpora/en_books_dev.txt", "bert_base_uncased", ["--max_seq_length=512",
                            "--max_predictions_per_seq=77", "--do_lower_case=True"]),
    "no_ud_dev.seq128": ("corpora/no_ud_dev.txt", "bert_base_uncased", ["--max_seq_length=128",
                         "--max_predictions_per_seq=20", "--do_lower_case=True"]),
    "no_ud_dev.seq128.mbert_cased": ("corpora/no_ud_dev.txt", "bert_multilingual_cased", [
        "--max_seq_length=128", "--max_predictions_per_seq=19", "--do_lower_case=False"]),
}


def compare(ours, ref):
    """Names of statistics outside tolerance."""
    bad = []
    for key, tol in TOLERANCE.items():
        if abs(ours[key] - ref[key]) > tol:
            bad.append(f"{key}: {ours[key]} vs {ref[key]}")
    for key, tol in RELATIVE.items():
        if abs(ours[key] - ref[key]) > tol * ref[key]:
            bad.append(f"{key}: {ours[key]} vs {ref[key]}")
    for key in ("starts_with_cls_frac", "len_max"):
        if ours[key] != ref[key]:
            bad.append(f"{key}: {ours[key]} vs {ref[key]}")
    return bad


@pytest.mark.parametrize("case", sorted(CASES))
def test_statistics_match_reference(case, shared_dir, tmp_path):
    corpus, vocab_name, flags = CASES[case]
    vocab = shared_dir / "data" / "vocab" / vocab_name / "vocab.txt"
    out = tmp_path / "out"
    build.run([f"--input_file={shared_dir / 'data' / corpus}", f"--vocab_file={vocab}", f"--output_dir={out}",
               "--masked_lm_prob=0.15", "--random_seed=12345", "--dupe_factor=5", "--do_whole_word_mask=True",
               *flags])
    stats = subprocess.run([sys.executable, str(shared_dir / "tools" / "bert_record_stats.py"), str(vocab),
                            str(out / "train-*")], capture_output=True, text=True, check=True)
    ours = json.loads(stats.stdout.strip().splitlines()[-1])
    ref = json.loads((shared_dir / "reference" / "google_bert_stats.json").read_text())[case]
    assert compare(ours, ref) == []
