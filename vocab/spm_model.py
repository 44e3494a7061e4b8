"""Loading and validating SentencePiece `.model` files in ALBERT format (<pad> <unk> [CLS] [SEP] [MASK])."""
import hashlib
from typing import Tuple

from vocab.vocab_file import Vocab, VocabError, _read_bytes, vocab_from_tokens

SPM_REQUIRED_PIECES = ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")


def is_spm_path(path: str) -> bool:
    return path.endswith(".model")


def _processor_from_bytes(path: str, data: bytes):
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    if not data:
        raise VocabError(f"{path}: SentencePiece model file is empty")
    if path.endswith(".vocab") or data[:5] == b"<pad>" or data[:5] == b"<unk>":
        raise VocabError(f"{path}: this is a SentencePiece .vocab text listing, not a .model; "
                         f"pass the .model file next to it")
    processor = spm.SentencePieceProcessor()
    try:
        processor.LoadFromSerializedProto(data)
    except (RuntimeError, OSError) as e:
        raise VocabError(f"{path}: not a valid SentencePiece model (cannot parse the ModelProto: {e})") from e
    return processor


def validate_spm_model(path: str, required: Tuple[str, ...] = SPM_REQUIRED_PIECES) -> Tuple[str, ...]:
    """Checks a .model parses and holds the ALBERT special pieces; returns the pieces in id order."""
    return _validate(path, _read_bytes(path), required)


def _validate(path: str, data: bytes, required: Tuple[str, ...]) -> Tuple[str, ...]:
    processor = _processor_from_bytes(path, data)
    pieces = tuple(processor.id_to_piece(i) for i in range(processor.get_piece_size()))
    index = {p: i for i, p in enumerate(pieces)}
    missing = [p for p in required if p not in index]
    if missing:
        head = ", ".join(f"{i}:{p!r}" for i, p in enumerate(pieces[:6]))
        raise VocabError(f"{path}: SentencePiece model lacks piece(s) {', '.join(missing)} "
                         f"(first pieces are {head}); train it with pad_id=0, unk_id=1 and "
                         f"[CLS],[SEP],[MASK] as user-defined or control symbols (`bertbeam vocab --model "
                         f"sentencepiece` does)")
    if "<unk>" in required and processor.unk_id() != index["<unk>"]:
        raise VocabError(f"{path}: piece <unk> is not the model's unknown piece")
    return pieces


def load_spm_vocab(path: str, required: Tuple[str, ...] = SPM_REQUIRED_PIECES) -> Vocab:
    """Validates a .model and returns its pieces as a Vocab of kind "sentencepiece"."""
    data = _read_bytes(path)
    pieces = _validate(path, data, required)
    return vocab_from_tokens(pieces, path=path, kind="sentencepiece", sha256=hashlib.sha256(data).hexdigest())


def load_any_vocab(path: str) -> Vocab:
    """A `.model` file is SentencePiece, anything else a BERT-format vocab.txt; both validated."""
    if is_spm_path(path):
        return load_spm_vocab(path)
    from vocab.vocab_file import load_vocab  # pylint: disable=import-outside-toplevel
    return load_vocab(path)
