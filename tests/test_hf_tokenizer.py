"""The exported Hugging Face tokenizer gives the pipeline's token ids, line by line, on the shared corpora
(WordPiece cased/uncased with the vocabularies' own special ids, SentencePiece, a Tibetan pre-split model)."""
import json
from pathlib import Path

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EN, NO = DATA / "corpora" / "en_books_dev.txt", DATA / "corpora" / "no_ud_dev.txt"
SPM = DATA / "spm" / "albert_de_30k-clean.model"
KANGYUR = DATA / "text" / "tibetan" / "kangyur_vol033_d12.jsonl"

# (vocabulary, corpus, do_lower_case, strip_accents)
CASES = [("vocab/bert_base_uncased/vocab.txt", EN, True, None),
         ("vocab/bert_base_cased/vocab.txt", EN, False, None),
         ("vocab/bert_multilingual_cased/vocab.txt", NO, False, None),
         ("vocab/norwegian_cased_50k/vocab.txt", NO, False, None),
         ("vocab/norwegian_uncased_50k/vocab.txt", NO, True, False),
         ("vocab/norwegian_oscar_wiki_uncased_50k/vocab.txt", NO, True, None),
         ("spm/albert_de_30k-clean.model", NO, True, None),
         ("spm/albert_de_30k-clean.model", EN, True, None),
         ("spm/albert_de_30k-clean.model", EN, False, None)]


def _lines(corpus: Path):
    return [x for x in corpus.read_text(encoding="utf-8").splitlines() if x.strip()]


def _pipeline_ids(tokenizer, lines):
    flat, splits = tokenizer.tokenize_lines(lines)
    return [flat[splits[i]:splits[i + 1]].tolist() for i in range(len(lines))]


@pytest.mark.parametrize("vocab,corpus,lower,strip", CASES,
                         ids=[f"{v.split('/')[1]}-{c.stem}-{'uncased' if lo else 'cased'}" for v, c, lo, _ in CASES])
def test_tokenizer_matches_pipeline_on_corpus(vocab, corpus, lower, strip, tmp_path):
    from training import hf_tokenizer
    from transforms.tokenizer_factory import TokenizerSpec, load_tokenizer
    path = DATA / vocab
    if not (path.exists() and corpus.exists()):
        pytest.skip("../shared data absent")
    spm = vocab.endswith(".model")
    info = hf_tokenizer.write_tokenizer(str(tmp_path), str(path), lower, strip)
    ours = load_tokenizer(TokenizerSpec(vocab_file=None if spm else str(path), spm_model_file=str(path) if spm else None,
                                        do_lower_case=lower, strip_accents=strip))
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    lines = _lines(corpus)
    want = _pipeline_ids(ours, lines)
    got = hf(lines, add_special_tokens=False)["input_ids"]
    bad = [i for i in range(len(lines)) if want[i] != got[i]]
    # Special tokens are the vocabulary's, wherever they sit (the Norwegian ones: [CLS]=501, [PAD]=503).
    ids = ours.vocab.special_ids()
    assert hf.cls_token_id == ids["[CLS]"] and hf.sep_token_id == ids["[SEP]"] and hf.mask_token_id == ids["[MASK]"]
    assert hf.pad_token_id == ids["[PAD]"] and hf.unk_token_id == ids["[UNK]"]
    assert hf(lines[0])["input_ids"] == [ids["[CLS]"]] + want[0] + [ids["[SEP]"]]
    pair = hf(lines[0], lines[1])
    assert pair["input_ids"] == [ids["[CLS]"]] + want[0] + [ids["[SEP]"]] + want[1] + [ids["[SEP]"]]
    assert pair["token_type_ids"] == [0] * (len(want[0]) + 2) + [1] * (len(want[1]) + 1)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["do_lower_case"] == info["do_lower_case"]
    print(f"{vocab} on {corpus.name} ({'uncased' if lower else 'cased'}): {len(lines)} lines, "
          f"{sum(map(len, want))} tokens, {len(bad)} lines differ")
    if not spm:
        assert not bad, [(lines[i][:80], want[i][:10], got[i][:10]) for i in bad[:3]]
        return
    # Unigram: sentencepiece's float32 Viterbi and tokenizers' pick different pieces where two
    # segmentations score the same to ~1e-6 (e.g. ▁ha|bit vs ▁|hab|it with the German model on English).
    import sentencepiece
    sp = sentencepiece.SentencePieceProcessor(model_file=str(path))
    for i in bad:
        a, b = sum(sp.get_score(t) for t in want[i]), sum(sp.get_score(t) for t in got[i])
        assert abs(a - b) < 1e-4, (lines[i][:80], a, b)
    assert len(bad) <= 0.002 * len(lines)


def _presplit_reference(text: str, chars: str) -> str:
    """transforms/presplit.py's rule: a space after each pre-split character except the text's last."""
    return "".join(c + " " if c in chars and k < len(text) - 1 else c for k, c in enumerate(text))


@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_tibetan_presplit_model(model_type, tmp_path):
    """A SentencePiece model trained on pre-split Tibetan (remove_extra_whitespaces off) with presplit_chars in
    its vocab_config.json: the exported tokenizer pre-splits as the pipeline does and gives the same ids."""
    if not KANGYUR.exists():
        pytest.skip("../shared data absent")
    import sentencepiece
    from training import hf_tokenizer
    chars = "\u0f04\u0f05\u0f08\u0f0b\u0f0c\u0f0d\u0f11\u0f14\u0f1c\u0fbe"
    try:
        from transforms import presplit as presplit_module
        chars = presplit_module.TIBETAN_PRESPLIT_CHARS
    except ImportError:
        presplit_module = None
    text = "".join(json.loads(x)["text"] for x in KANGYUR.read_text(encoding="utf-8").splitlines())
    lines = [x.strip() + "།" for x in text[:400_000].split("།") if x.strip()]
    train_file = tmp_path / "bo.txt"
    train_file.write_text("\n".join(_presplit_reference(x, chars) for x in lines[:3000]) + "\n", encoding="utf-8")
    # As `bertbeam vocab --lang bo` trains them: whitespace runs kept (each added space is a "▁").
    prefix = tmp_path / model_type / "bo"
    prefix.parent.mkdir()
    sentencepiece.SentencePieceTrainer.train(
        input=str(train_file), model_prefix=str(prefix), vocab_size=600, model_type=model_type, pad_id=0, unk_id=1,
        bos_id=-1, eos_id=-1, user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"], character_coverage=1.0,
        normalization_rule_name="nmt_nfkc", remove_extra_whitespaces=False, minloglevel=2, num_threads=1,
        hard_vocab_limit=False)
    (prefix.parent / "vocab_config.json").write_text(json.dumps({"presplit_chars": chars, "do_lower_case": False}))
    out = tmp_path / "hf"
    info = hf_tokenizer.write_tokenizer(str(out), str(prefix) + ".model", do_lower_case=False)
    assert info["presplit_chars"] == chars
    sp = sentencepiece.SentencePieceProcessor(model_file=str(prefix) + ".model")
    sample = lines[3000:6000] + ["༄༅། །བརྒྱད་སྟོང་བཞུགས་སོ། །", "ཀ་  ཁ", "ཀ༌ཁ་"]
    if presplit_module is not None:  # the pipeline's own pre-split, where this branch has it
        assert [presplit_module.presplit(x, chars) for x in sample] == [_presplit_reference(x, chars) for x in sample]
    want = [sp.encode(_presplit_reference(x, chars)) for x in sample]
    hf = transformers.AutoTokenizer.from_pretrained(out)
    got = hf(sample, add_special_tokens=False)["input_ids"]
    bad = [i for i in range(len(sample)) if want[i] != got[i]]
    print(f"Tibetan pre-split ({model_type}, {sp.get_piece_size()} pieces): {len(sample)} lines, {sum(map(len, want))} tokens, {len(bad)} lines differ")
    for i in bad:  # only equal-score alternatives (see above) may differ
        a, b = sum(sp.get_score(t) for t in want[i]), sum(sp.get_score(t) for t in got[i])
        assert abs(a - b) < 1e-4, (sample[i][:60], sp.id_to_piece(want[i][:12]), hf.convert_ids_to_tokens(got[i][:12]))
    assert len(bad) <= 0.002 * len(sample)
    assert np.mean([len(w) for w in want]) > 3
