"""SentencePieceTokenizer: ids equal sentencepiece's own encoding; ALBERT preprocessing; model errors."""
import io
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from transforms.sentencepiece_tokenizer import SentencePieceTokenizer, albert_preprocess_lines

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
ALBERT_DE = DATA / "spm" / "albert_de_30k-clean.model"
TEST_MODEL = DATA / "spm" / "sentencepiece_test_model.model"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared not present")

TRICKY = ["Hallo Welt, das ist 1990, ein Test.", "Straße Ärger Öl über ÜBER naïve café", "",
          "  leading and   inner   spaces\tand tab  ", "``quoted'' text", "e\u0301 combining",
          "ﬁnance ① ½ ＡＢＣ", "日本語のテキスト", "ctrl\x01char nul\x00x \ufffd", "Σ ΟΔΟΣ İstanbul"]


def _read_lines(path: Path, n: int):
    text = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    return [x[:-1] if x.endswith("\r") else x for x in text.split("\n")][:n]


def _unpack(flat, splits):
    flat = flat.tolist()
    return [flat[a:b] for a, b in zip(splits[:-1].tolist(), splits[1:].tolist())]


def _albert_preprocess_text(inputs: str, lower: bool) -> str:
    """google-research/albert tokenization.preprocess_text(remove_space=True), restated per line."""
    outputs = " ".join(inputs.strip().split())
    outputs = unicodedata.normalize("NFKD", outputs)
    outputs = "".join(c for c in outputs if not unicodedata.combining(c))
    return outputs.lower() if lower else outputs


def _real_lines():
    lines = TRICKY[:]
    for rel, n in (("corpora/en_books_dev.txt", 1500), ("corpora/no_ud_dev.txt", 1500),
                   ("text/botchan.txt", 500), ("text/wagahaiwa_nekodearu.txt", 200)):
        lines += _read_lines(DATA / rel, n)
    return lines


@needs_shared
@pytest.mark.parametrize("model", [ALBERT_DE, TEST_MODEL], ids=["albert_de", "test_model"])
def test_ids_equal_sentencepiece_encode(model):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(model))
    lines = _real_lines()
    tok = SentencePieceTokenizer(str(model), do_lower_case=False, require_albert_pieces=model == ALBERT_DE)
    flat, splits = tok.tokenize_lines(lines)
    assert flat.dtype == np.int32 and splits.dtype == np.int64 and len(splits) == len(lines) + 1
    assert _unpack(flat, splits) == [sp.encode(x) for x in lines]
    assert tok.vocab.size == sp.get_piece_size() and tok.vocab.kind == "sentencepiece"


@needs_shared
@pytest.mark.parametrize("lower,albert", [(True, None), (False, True), (True, False)])
def test_lower_case_follows_albert_preprocess_text(lower, albert):
    import sentencepiece as spm
    sp = spm.SentencePieceProcessor(model_file=str(ALBERT_DE))
    lines = _real_lines()
    tok = SentencePieceTokenizer(str(ALBERT_DE), do_lower_case=lower, albert_preprocess=albert)
    if albert is False:
        want_text = [x.lower() for x in lines]
    else:
        want_text = [_albert_preprocess_text(x, lower) for x in lines]
    assert tok.preprocess(lines) == want_text
    assert _unpack(*tok.tokenize_lines(lines)) == [sp.encode(x) for x in want_text]


def test_albert_preprocess_lines_matches_per_line_statement():
    lines = TRICKY + ["Ångström\u00a0x\u2028y", "\u0301\u0301", "a\u0345b"]
    for lower in (True, False):
        assert albert_preprocess_lines(lines, lower) == [_albert_preprocess_text(x, lower) for x in lines]


@needs_shared
def test_albert_vocab_and_word_starts():
    tok = SentencePieceTokenizer(str(ALBERT_DE))
    v = tok.vocab
    assert (v.pad_id, v.unk_id, v.cls_id, v.sep_id, v.mask_id) == (0, 1, 2, 3, 4)
    ids, _ = tok.tokenize_lines(["Hallo Welt, das ist ein Test der Bundesregierungsentscheidungen."])
    starts = tok.word_starts(ids)
    # ALBERT's rule (_is_start_piece_sp): "▁"/"<" pieces, punctuation, and pieces with any character
    # outside a-z and ASCII punctuation ("foreign" pieces are whole words).
    ok = set("abcdefghijklmnopqrstuvwxyz") | set('!"#$%&\'()*+,-./:;?@[\\]^_`{|}~')
    pieces = [v.tokens[i] for i in ids]
    assert starts.tolist() == [p.startswith(("\u2581", "<")) or p in '!"#$%&\'()*+,-./:;?@[\\]^_`{|}~'
                               or any(c.lower() not in ok for c in p) for p in pieces]
    assert starts[0] and not starts.all()
    flat, splits = tok.tokenize_lines([])
    assert flat.tolist() == [] and splits.tolist() == [0]


@needs_shared
def test_gs_paths_are_read_through_beam_filesystems(monkeypatch):
    from apache_beam.io.filesystems import FileSystems
    seen = []

    def fake_open(path, *args, **kwargs):
        seen.append(path)
        return io.BytesIO(ALBERT_DE.read_bytes())
    monkeypatch.setattr(FileSystems, "open", staticmethod(fake_open))
    tok = SentencePieceTokenizer("gs://bucket/albert.model")
    assert seen == ["gs://bucket/albert.model"]
    assert tok.vocab.path == "gs://bucket/albert.model" and tok.vocab.size == 30000


def test_bad_models_raise_value_error_naming_the_file(tmp_path):
    with pytest.raises(ValueError, match="nope.model"):
        SentencePieceTokenizer(str(tmp_path / "nope.model"))
    garbage = tmp_path / "garbage.model"
    garbage.write_bytes(b"this is not a protobuf \x00\xff" * 10)
    with pytest.raises(ValueError, match="garbage.model"):
        SentencePieceTokenizer(str(garbage))
    empty = tmp_path / "empty.model"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.model"):
        SentencePieceTokenizer(str(empty))


@needs_shared
def test_model_without_albert_pieces_is_refused():
    with pytest.raises(ValueError, match=r"sentencepiece_test_model.model.*\[CLS\]"):
        SentencePieceTokenizer(str(TEST_MODEL))
