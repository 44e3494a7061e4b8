"""Report numbers and the BERT tokenizer the report uses, against the shared vocabularies (skipped without ../shared)."""
from pathlib import Path

import pytest

from transforms.wordpiece import WordPieceTokenizer, basic_tokenize
from vocab.report import _wordpiece_splitter, read_heldout, report_vocab

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared is absent")


def test_basic_split_and_wordpiece_semantics():
    assert basic_tokenize("Hei, PÅ\u00a0deg!\x00", True, False) == ["hei", ",", "på", "deg", "!"]
    assert basic_tokenize("Hei, PÅ deg", True, True) == ["hei", ",", "pa", "deg"]
    split = _wordpiece_splitter(["[UNK]", "un", "##aff", "##able", "på"], True, False)
    assert split("Unaffable på xyz") == ["un", "##aff", "##able", "på", "[UNK]"]


@needs_shared
def test_bert_base_uncased_on_norwegian_dev_is_about_2_2_pieces_per_word():
    lines = read_heldout(str(SHARED / "corpora/no_ud_dev.txt"))
    rep = report_vocab(str(SHARED / "vocab/bert_base_uncased/vocab.txt"), lines)
    assert (rep.do_lower_case, rep.strip_accents) == (True, True)  # inferred from the vocabulary
    assert 2.15 < rep.pieces_per_word < 2.3 and rep.words > 50_000
    assert rep.examples["på"] == ["pa"]


@needs_shared
def test_reference_tokenizer_agrees_with_hf_tokenizer_json():
    from tokenizers import Tokenizer
    vocab_dir = SHARED / "vocab/bert_base_uncased"
    hf = Tokenizer.from_file(str(vocab_dir / "tokenizer.json"))
    hf.no_padding()
    hf.no_truncation()
    tok = WordPieceTokenizer(str(vocab_dir / "vocab.txt"), do_lower_case=True)
    lines = [l for l in read_heldout(str(SHARED / "corpora/no_ud_dev.txt")) if l.strip()][:800]
    lines += [l for l in (SHARED / "text/bert_sample_text.txt").read_text(encoding="utf-8").split("\n") if l.strip()]
    encodings = hf.encode_batch(lines, add_special_tokens=False)
    flat, splits = tok.tokenize_lines(lines)
    ours = [flat[a:b].tolist() for a, b in zip(splits[:-1], splits[1:])]
    assert [e.ids for e in encodings] == ours


@needs_shared
def test_accent_stripped_vocab_with_accents_kept_loses_words():
    # The seed's Scandinavian vocabulary has no "å" at all: keeping accents makes "på" an [UNK].
    lines = read_heldout(str(SHARED / "corpora/no_ud_dev.txt"))[:600]
    path = str(SHARED / "vocab/scandinavian_oscar_wiki_uncased_50k/vocab.txt")
    kept = report_vocab(path, lines, True, False)
    stripped = report_vocab(path, lines)
    assert stripped.strip_accents is True and stripped.unk_word_rate == 0.0
    assert kept.unk_word_rate > 0.03 and kept.examples["på"] == ["[UNK]"]
