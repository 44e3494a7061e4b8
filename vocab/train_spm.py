"""SentencePiece (unigram or BPE) training in ALBERT format: <pad> 0, <unk> 1, [CLS] [SEP] [MASK] 2-4."""
import os
import unicodedata
from typing import Dict, Iterable

ALBERT_USER_SYMBOLS = ("[CLS]", "[SEP]", "[MASK]")


def normalize(text: str, do_lower_case: bool, do_strip_accents: bool) -> str:
    """Casing and accent handling applied to text before SentencePiece training and encoding
    (accent stripping as BERT does it: NFD, then drop combining marks; "på" -> "pa", "ø" stays)."""
    if do_lower_case:
        text = text.lower()
    if do_strip_accents:
        text = "".join(ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch) != "Mn")
    return text


def train_sentencepiece(sentences: Iterable[str], out_dir: str, vocab_size: int, model_type: str = "unigram",
                        do_lower_case: bool = True, strip_accents: bool = False, seed: int = 12345,
                        character_coverage: float = 0.9999, prefix: str = "spm",
                        num_threads: int = 0) -> Dict[str, str]:
    """Trains DIR/PREFIX.model and DIR/PREFIX.vocab; casing is applied to the text before training.

    ALBERT lowercases (and optionally strips accents) before SentencePiece, so the same `normalize`
    must be applied when encoding with this model; the casing sidecar records which.
    """
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"--sp_model_type must be unigram or bpe, not {model_type!r}")
    os.makedirs(out_dir, exist_ok=True)
    model_prefix = os.path.join(out_dir, prefix)
    if hasattr(spm, "set_random_generator_seed"):
        spm.set_random_generator_seed(seed)  # sentence sampling/shuffling inside the trainer

    def normalized() -> Iterable[str]:
        for s in sentences:
            s = normalize(s, do_lower_case, strip_accents).strip()
            if s:
                yield s

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(normalized()), model_prefix=model_prefix, vocab_size=vocab_size,
        model_type=model_type, pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
        pad_piece="<pad>", unk_piece="<unk>", user_defined_symbols=list(ALBERT_USER_SYMBOLS),
        character_coverage=character_coverage, hard_vocab_limit=False,
        max_sentence_length=1 << 16, shuffle_input_sentence=True, num_threads=num_threads or os.cpu_count() or 1,
        minloglevel=2)
    return {"model": model_prefix + ".model", "vocab": model_prefix + ".vocab"}
