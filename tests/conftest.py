"""Shared fixtures: the ../shared folder (skipped when absent) and an embedded corpus + vocabulary."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def pytest_configure(config):
    config.addinivalue_line("markers", "dataflow: also run with the `dataflow` extra installed (.ci/run does)")
    config.addinivalue_line("markers", "slow: over a minute of wall time (`-m 'not slow'` leaves them out)")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout; tests that need it skip cleanly on a fresh clone without it."""
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    """CPython's documentation topics in BERT format (needs nothing from ../shared)."""
    from pipeline.demo_corpus import demo_documents, write_bert_format
    path = tmp_path_factory.mktemp("corpus") / "pydoc_topics.txt"
    write_bert_format(demo_documents(), str(path))
    return path


@pytest.fixture(scope="session")
def demo_vocab(tmp_path_factory, demo_corpus) -> Path:
    """A small uncased WordPiece vocabulary trained on the demo corpus, in BERT's layout."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    lines = [l for l in demo_corpus.read_text(encoding="utf-8").splitlines() if l.strip()]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(lines, trainer=trainers.WordPieceTrainer(
        vocab_size=3000, special_tokens=specials, continuing_subword_prefix="##", show_progress=False))
    learned = [t for t, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]) if t not in specials]
    # BERT's layout: [PAD] 0, [unused..], [UNK] [CLS] [SEP] [MASK] at 100..103.
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + specials[1:] + learned
    path = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


KANGYUR = SHARED / "data" / "text" / "tibetan" / "kangyur_vol033_d12.jsonl"
# The CompassionAI seed's create_pretraining_data.py flags (ALBERT's names), as both Tibetan seed tests pass them.
SEED_ALBERT_BUILD_FLAGS = ("--do_lower_case=False", "--keep_accents=True", "--short_seq_prob=0.05",
                           "--max_predictions_per_seq=20", "--masked_lm_prob=0.15", "--do_whole_word_mask=False",
                           "--favor_shorter_ngram=False", "--ngram=3", "--do_permutation=False",
                           "--random_next_sentence=False", "--max_seq_length=128")


@pytest.fixture
def kangyur_spm(tmp_path):
    """(Kangyur volume 33's texts, a 1,000-piece BPE SentencePiece model trained on its first 200,000
    characters cut at the shad, with ALBERT's specials); skips without ../shared or sentencepiece."""
    import json
    import re
    if not KANGYUR.exists():
        pytest.skip("../shared Tibetan text absent")
    spm = pytest.importorskip("sentencepiece")
    texts = [json.loads(line)["text"] for line in KANGYUR.read_text(encoding="utf-8").splitlines()]
    lines = [s for s in re.split(r"(?<=\u0f0d)\s*", "".join(texts)[:200_000]) if s.strip()]
    (tmp_path / "lines.txt").write_text("\n".join(lines), encoding="utf-8")
    spm.SentencePieceTrainer.train(input=str(tmp_path / "lines.txt"), model_prefix=str(tmp_path / "bo"),
                                   vocab_size=1000, model_type="bpe", pad_id=0, unk_id=1, eos_id=-1, bos_id=-1,
                                   control_symbols=["[CLS]", "[SEP]", "[MASK]"], minloglevel=2)
    return texts, tmp_path / "bo.model"


@pytest.fixture
def seed_albert_build_flags():
    return list(SEED_ALBERT_BUILD_FLAGS)
