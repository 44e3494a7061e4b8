"""Shared fixtures: the ../shared folder (skipped when absent) and an embedded corpus + vocabulary."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def pytest_configure(config):
    config.addinivalue_line("markers", "dataflow: also run with the `dataflow` extra installed (.ci/run does)")


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
