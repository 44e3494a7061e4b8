"""Every vocabulary validation error names the file (and the line, where there is one)."""
import gzip
import json
from pathlib import Path

import pytest

from vocab.casing import read_vocab_config
from vocab.spm_model import load_any_vocab, validate_spm_model
from vocab.vocab_file import SPECIAL_TOKENS, VocabError, load_vocab

GOOD = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "##s", "på"]


def _write(tmp_path: Path, data, name: str = "vocab.txt") -> str:
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(path)


def _error(path: str) -> str:
    with pytest.raises(VocabError) as e:
        load_any_vocab(path)
    return str(e.value)


def test_good_vocab_loads(tmp_path):
    v = load_vocab(_write(tmp_path, "\n".join(GOOD) + "\n"))
    assert v.size == len(GOOD) and v.special_ids() == {t: i for i, t in enumerate(SPECIAL_TOKENS)}


@pytest.mark.parametrize("tokens, line, words", [
    (GOOD + ["the"], 9, "duplicate token 'the' (first on line 6)"),
    (GOOD[:6] + [""] + GOOD[6:], 7, "empty or whitespace-only token"),
    (GOOD[:6] + ["   "] + GOOD[6:], 7, "empty or whitespace-only token"),
    (GOOD[:6] + [" x"] + GOOD[6:], 7, "leading/trailing whitespace"),
    (GOOD[:6] + ["a b"] + GOOD[6:], 7, "contains whitespace"),
])
def test_bad_token_names_file_and_line(tmp_path, tokens, line, words):
    path = _write(tmp_path, "\n".join(tokens) + "\n")
    msg = _error(path)
    assert msg.startswith(f"{path}:{line}:") and words in msg


def test_crlf_names_file_and_line(tmp_path):
    path = _write(tmp_path, "\r\n".join(GOOD) + "\r\n")
    msg = _error(path)
    assert msg.startswith(f"{path}:1:") and "CRLF" in msg


def test_crlf_on_one_line_only(tmp_path):
    path = _write(tmp_path, "\n".join(GOOD[:3]) + "\n" + GOOD[3] + "\r\n" + "\n".join(GOOD[4:]) + "\n")
    assert _error(path).startswith(f"{path}:4: CRLF")


@pytest.mark.parametrize("missing", SPECIAL_TOKENS)
def test_missing_special_token_names_file(tmp_path, missing):
    path = _write(tmp_path, "\n".join(t for t in GOOD if t != missing) + "\n")
    msg = _error(path)
    assert msg.startswith(f"{path}:") and f"missing special token(s) {missing}" in msg


def test_bom_and_bad_utf8_and_empty(tmp_path):
    bom = _write(tmp_path, "\ufeff" + "\n".join(GOOD) + "\n", "bom.txt")
    assert _error(bom).startswith(f"{bom}:1:") and "byte-order mark" in _error(bom)
    bad = _write(tmp_path, ("\n".join(GOOD[:6]) + "\n").encode() + b"\xff\xfe\n", "bad.txt")
    assert _error(bad).startswith(f"{bad}:7:") and "UTF-8" in _error(bad)
    empty = _write(tmp_path, b"", "empty.txt")
    assert _error(empty) == f"{empty}: vocabulary file is empty"


def test_unreadable_file_names_path(tmp_path):
    missing = str(tmp_path / "nope" / "vocab.txt")
    assert _error(missing).startswith(f"{missing}: cannot read")
    assert _error(str(tmp_path / "x.model")).startswith(f"{tmp_path / 'x.model'}: cannot read")


def test_spm_vocab_listing_passed_as_vocab_txt(tmp_path):
    path = _write(tmp_path, "<pad>\t0\n<unk>\t0\n[CLS]\t0\n", "spm.vocab")
    msg = _error(path)
    assert msg.startswith(f"{path}:1:") and "pass the .model file" in msg


def test_invalid_spm_model_names_file(tmp_path):
    garbage = _write(tmp_path, b"\x08\x01garbage that is no protobuf" * 3, "bad.model")
    msg = _error(garbage)
    assert msg.startswith(f"{garbage}:") and "not a valid SentencePiece model" in msg
    empty = _write(tmp_path, b"", "empty.model")
    assert _error(empty) == f"{empty}: SentencePiece model file is empty"
    listing = _write(tmp_path, "<pad>\t0\n<unk>\t0\n", "listing.model")
    assert "not a .model" in _error(listing)


def _plain_spm_model(tmp_path: Path) -> str:
    import sentencepiece as spm
    text = [f"sentence number {i} with some words and letters abcdefghij" for i in range(200)]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_prefix=str(tmp_path / "plain"),
                                   vocab_size=60, hard_vocab_limit=False, minloglevel=2)
    return str(tmp_path / "plain.model")


def test_spm_model_missing_albert_pieces(tmp_path):
    path = _plain_spm_model(tmp_path)  # sentencepiece defaults: <unk> <s> </s>, no <pad>/[CLS]/[SEP]/[MASK]
    with pytest.raises(VocabError) as e:
        validate_spm_model(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}:") and "<pad>, [CLS], [SEP], [MASK]" in msg and "0:'<unk>'" in msg


def test_sidecar_errors_name_file(tmp_path):
    vocab = _write(tmp_path, "\n".join(GOOD) + "\n")
    (tmp_path / "vocab_config.json").write_text("{not json")
    with pytest.raises(VocabError, match=r"vocab_config.json: casing sidecar is not valid JSON"):
        read_vocab_config(vocab)
    (tmp_path / "vocab_config.json").write_text(json.dumps(
        {"format": "bertbeam.vocab.v1", "do_lower_case": True, "strip_accents": False, "sha256": "0" * 64}))
    with pytest.raises(VocabError, match=r"belongs to a different vocabulary"):
        read_vocab_config(vocab)


def test_gz_is_not_a_vocab(tmp_path):
    path = _write(tmp_path, gzip.compress(b"[PAD]\n"), "vocab.txt")
    assert _error(path).startswith(f"{path}:1:")
