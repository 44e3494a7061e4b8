"""Training tiny WordPiece / SentencePiece vocabularies through `bertbeam vocab`, the casing sidecar, sampling."""
import gzip
import json
import logging
from pathlib import Path

import pytest

from vocab import cli
from vocab.casing import check_casing, infer_casing, read_vocab_config
from vocab.corpus import expand_inputs, iter_keyed_sentences
from vocab.sample import run_sample_pipeline, smallest_n
from vocab.spm_model import load_any_vocab
from vocab.vocab_file import VocabError

WORDS = ("på blåbærsyltetøy Stortinget fylkeskommunene skjønner Tromsø får kjøre Året Øst "
         "og det er en som har ikke til av for med de var seg Café naïve").split()


SMALL = ("--num_unused_before", "5", "--num_unused_after", "0")  # few [unusedN] slots for tiny vocabularies


def _corpus(tmp_path: Path, n: int = 400) -> str:
    lines = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(6 + i % 5)]
        lines.append(" ".join(words) + ".")
        if i % 10 == 9:
            lines.append("")  # document break (bert format)
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _train(tmp_path: Path, *flags: str, name: str = "out") -> Path:
    out = tmp_path / name
    # These corpora are too small for most sizes asked; the size check has its own test (test_tibetan.py).
    rc = cli.main(["--input_file", _corpus(tmp_path), "--output_dir", str(out), *flags, "--allow_smaller_vocab"])
    assert rc == 0
    return out


def test_wordpiece_uncased_keeping_accents(tmp_path):
    out = _train(tmp_path, "--vocab_size", "300", "--do_lower_case", "--strip_accents=False",
                 "--num_unused_before", "5", "--num_unused_after", "3")
    tokens = (out / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert tokens[:7] == ["[PAD]"] + [f"[unused{i}]" for i in range(5)] + ["[UNK]"]
    assert tokens[7:13] == ["[CLS]", "[SEP]", "[MASK]", "[unused5]", "[unused6]", "[unused7]"]
    assert "på" in tokens and "pa" not in tokens and not any(t != t.lower() for t in tokens[13:])
    vocab = load_any_vocab(str(out / "vocab.txt"))
    assert vocab.special_ids() == {"[PAD]": 0, "[UNK]": 6, "[CLS]": 7, "[SEP]": 8, "[MASK]": 9}
    config = read_vocab_config(str(out / "vocab.txt"))
    assert (config["do_lower_case"], config["strip_accents"], config["model"]) == (True, False, "wordpiece")
    assert config["vocab_size"] == len(tokens) <= 300
    # tokenizer.json has the same ids and the same casing as vocab.txt.
    from tokenizers import Tokenizer
    hf = Tokenizer.from_file(str(out / "tokenizer.json"))
    enc = hf.encode("På Tromsø")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]" and "på" in enc.tokens
    assert [vocab.token_to_id[t] for t in enc.tokens] == enc.ids


def test_wordpiece_default_uncased_strips_accents_and_cased_keeps_case(tmp_path):
    stripped = _train(tmp_path, "--vocab_size", "200", *SMALL, name="stripped")
    tokens = set((stripped / "vocab.txt").read_text(encoding="utf-8").split())
    assert "pa" in tokens and "på" not in tokens
    assert check_casing(str(stripped / "vocab.txt")) == (True, True)
    cased = _train(tmp_path, "--vocab_size", "200", *SMALL, "--nodo_lower_case", name="cased")
    tokens = set((cased / "vocab.txt").read_text(encoding="utf-8").split())
    assert "Tromsø" in tokens or "T" in tokens
    assert check_casing(str(cased / "vocab.txt")) == (False, False)


def test_wordpiece_training_is_deterministic(tmp_path):
    # Plain HF training differed in 6 of 8 runs on this corpus (huggingface/tokenizers#1794).
    outs = [_train(tmp_path, "--vocab_size", "250", *SMALL, name=f"run{i}") for i in range(4)]
    first = (outs[0] / "vocab.txt").read_bytes()
    assert all((o / "vocab.txt").read_bytes() == first for o in outs[1:])


def test_casing_sidecar_round_trip_and_mismatch(tmp_path):
    out = _train(tmp_path, "--vocab_size", "200", *SMALL, "--do_lower_case=True", "--strip_accents=False")
    vocab = str(out / "vocab.txt")
    assert check_casing(vocab) == (True, False)
    assert check_casing(vocab, True, None) == (True, False)
    with pytest.raises(VocabError) as e:
        check_casing(vocab, do_lower_case=False)
    assert "vocab_config.json" in str(e.value) and "do_lower_case=True" in str(e.value)
    with pytest.raises(VocabError, match="strip_accents=False"):
        check_casing(vocab, strip_accents=True)
    # Editing the vocabulary after the fact orphans the sidecar: an error, not a silent mismatch.
    with open(vocab, "a", encoding="utf-8") as f:
        f.write("extra\n")
    with pytest.raises(VocabError, match="different vocabulary"):
        check_casing(vocab)


def test_refuses_to_overwrite_and_rejects_unknown_flags(tmp_path):
    _train(tmp_path, "--vocab_size", "200", *SMALL, name="o")
    with pytest.raises(SystemExit, match="--overwrite"):
        cli.main(["--input_file", _corpus(tmp_path), "--output_dir", str(tmp_path / "o"),
                  "--vocab_size", "200", *SMALL])
    assert cli.main(["--input_file", _corpus(tmp_path), "--output_dir", str(tmp_path / "p"),
                     "--vocab_size", "200", *SMALL, "--vocab_sise", "3"]) == 2
    assert cli.main(["--input_file", str(tmp_path / "nothing*.txt"), "--output_dir", str(tmp_path / "q"),
                     "--vocab_size", "200", *SMALL]) == 2


def test_sentencepiece_albert_format(tmp_path):
    out = _train(tmp_path, "--vocab_size", "120", "--model", "sentencepiece", "--sp_model_type", "bpe",
                 "--strip_accents=False")
    vocab = load_any_vocab(str(out / "spm.model"))
    assert vocab.kind == "sentencepiece"
    assert vocab.tokens[:5] == ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")
    assert (out / "spm.vocab").read_text(encoding="utf-8").startswith("<pad>\t")
    assert check_casing(str(out / "spm.model")) == (True, False)
    assert read_vocab_config(str(out / "spm.model"))["sp_model_type"] == "bpe"


def test_validate_and_report_commands(tmp_path, capsys):
    out = _train(tmp_path, "--vocab_size", "200", *SMALL, "--strip_accents=False")
    heldout = tmp_path / "heldout.txt"
    heldout.write_text("på Tromsø får kjøre\nCafé naïve og det\n", encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["validate", "--vocab_file", str(out / "vocab.txt")]) == 0
    assert "do_lower_case=True strip_accents=False (vocab_config.json)" in capsys.readouterr().out
    bad = tmp_path / "bad.txt"
    bad.write_text("[PAD]\n[PAD]\n", encoding="utf-8")
    assert cli.main(["validate", "--vocab_file", f"{out / 'vocab.txt'},{bad}"]) == 1
    assert f"{bad}:2: duplicate token" in capsys.readouterr().err
    js = tmp_path / "r.json"
    assert cli.main(["report", "--vocab_file", str(out / "vocab.txt"), "--heldout_file", str(heldout),
                     "--json_output", str(js)]) == 0
    rep = json.loads(js.read_text())["vocabularies"][0]
    assert rep["words"] == 8 and rep["unk_words"] == 0 and rep["pieces"] >= 8
    assert "pieces per word" in capsys.readouterr().out


def test_beam_sample_equals_reference_and_is_deterministic(tmp_path):
    corpus_dir = tmp_path / "c"
    corpus_dir.mkdir()
    lines_a = [f"setning {i} på norsk" for i in range(300)]
    lines_b = [json.dumps({"text": f"avsnitt {i} første\nandre linje {i}"}) for i in range(100)]
    (corpus_dir / "a.txt").write_text("\n".join(lines_a) + "\n", encoding="utf-8")
    (corpus_dir / "b.jsonl.gz").write_bytes(gzip.compress(("\n".join(lines_b) + "\n").encode("utf-8")))
    paths = expand_inputs(f"{corpus_dir}/*.txt")
    out1, out2 = tmp_path / "s1.txt", tmp_path / "s2.txt"
    run_sample_pipeline(paths, 50, str(out1), seed=7, input_format="bert")
    run_sample_pipeline(paths, 50, str(out2), seed=7, input_format="bert",
                        pipeline_args=["--direct_num_workers=2", "--direct_running_mode=multi_threading"])
    got = out1.read_text(encoding="utf-8").split("\n")[:-1]
    assert got == smallest_n(iter_keyed_sentences(paths, "bert"), 50, seed=7)
    assert out1.read_bytes() == out2.read_bytes() and len(set(got)) == 50
    jl = expand_inputs(f"{corpus_dir}/*.jsonl.gz")
    run_sample_pipeline(jl, 30, str(out1), seed=7, input_format="jsonl")
    got = out1.read_text(encoding="utf-8").split("\n")[:-1]
    assert got == smallest_n(iter_keyed_sentences(jl, "jsonl"), 30, seed=7)
    assert any(s.startswith("andre linje") for s in got) and any(s.startswith("avsnitt") for s in got)


def test_train_on_sample_through_cli(tmp_path):
    out = _train(tmp_path, "--vocab_size", "200", *SMALL, "--sample_sentences", "100", "--keep_sample")
    assert len((out / "sample_sentences.txt").read_text(encoding="utf-8").split("\n")) == 101
    assert read_vocab_config(str(out / "vocab.txt"))["sample_sentences"] == 100


def test_infer_casing_from_content():
    letters = [f"{a}{b}" for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz"]
    assert infer_casing(letters) == (True, True)
    assert infer_casing(letters + ["på", "blå", "ære"]) == (True, False)
    assert infer_casing(letters + [w.capitalize() for w in letters]) == (False, False)
    assert infer_casing(["a", "b"]) == (None, None)


def test_absl_booleans():
    assert cli.absl_bools(["--do_lower_case", "--nostrip_accents", "--x"], ("do_lower_case", "strip_accents")) \
        == ["--do_lower_case=true", "--strip_accents=false", "--x"]
    assert cli.parse_bool("True") and not cli.parse_bool("false")


def test_check_casing_warns_on_content_contradiction(tmp_path, caplog):
    letters = [f"{a}{b}" for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + letters) + "\n", encoding="utf-8")
    assert check_casing(str(path)) == (True, True)  # inferred: uncased, accent-stripped
    with caplog.at_level(logging.WARNING):
        assert check_casing(str(path), True, False) == (True, False)  # explicit wins, but warns
    assert "no accented tokens" in caplog.text


def test_vocab_command_prints_no_beam_notes(tmp_path):
    """`bertbeam vocab` (with a Beam sampling job) and `vocab validate` print their own lines only: not Beam's
    import-time INFO notes (an install without the Google Cloud libraries) nor its default-runner notice."""
    import subprocess
    import sys
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "v"
    train = subprocess.run([sys.executable, "-m", "pipeline.main", "vocab", "--input_file", _corpus(tmp_path),
                            "--output_dir", str(out), "--vocab_size", "200", *SMALL, "--sample_sentences", "100",
                            "--allow_smaller_vocab"], capture_output=True, text=True, cwd=repo, timeout=300)
    assert train.returncode == 0, train.stderr
    validate = subprocess.run([sys.executable, "-m", "pipeline.main", "vocab", "validate", "--vocab_file",
                               str(out / "vocab.txt")], capture_output=True, text=True, cwd=repo, timeout=300)
    assert validate.returncode == 0, validate.stderr
    for proc in (train, validate):
        printed = proc.stdout + proc.stderr
        assert "apache_beam" not in printed and "Missing pipeline option" not in printed, printed
        assert "apitools" not in printed, printed
    assert "INFO bertbeam.vocab: drawing a 100-sentence sample" in train.stderr
