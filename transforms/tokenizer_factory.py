"""Builds the pipeline's tokenizer from a picklable spec (called in DoFn.setup, never at import)."""
import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class TokenizerSpec:
    """Which tokenizer to build: WordPiece from vocab_file, or SentencePiece from spm_model_file."""

    vocab_file: Optional[str] = None
    spm_model_file: Optional[str] = None
    do_lower_case: bool = True
    strip_accents: Optional[bool] = None  # None: follow do_lower_case, as BERT does
    presplit_chars: Optional[str] = None  # SentencePiece; None: as the model's vocab_config.json records

    @property
    def kind(self) -> str:
        return "sentencepiece" if self.spm_model_file else "wordpiece"


def load_tokenizer(spec: TokenizerSpec):
    """An object with `.tokenize_lines(lines) -> (flat_ids, row_splits)` and `.vocab`."""
    if spec.spm_model_file:
        # pylint: disable=import-outside-toplevel
        from transforms.sentencepiece_tokenizer import SentencePieceTokenizer, model_presplit_chars
        presplit_chars = spec.presplit_chars
        if presplit_chars is None:
            presplit_chars = model_presplit_chars(spec.spm_model_file)
        return SentencePieceTokenizer(spec.spm_model_file, do_lower_case=spec.do_lower_case,
                                      presplit_chars=presplit_chars)
    from transforms.wordpiece import WordPieceTokenizer  # pylint: disable=import-outside-toplevel
    return WordPieceTokenizer(spec.vocab_file, do_lower_case=spec.do_lower_case, strip_accents=spec.strip_accents)
