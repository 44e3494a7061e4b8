"""Pure-Python greedy longest-match-first WordPiece with BERT semantics, for vocabulary reports and checks."""
from typing import Dict, List, Sequence, Tuple

from vocab.text_norm import split_words

MAX_INPUT_CHARS_PER_WORD = 200  # google-research/bert (eedf5716) maps longer words to [UNK] untried


def wordpiece_word(word: str, token_to_id: Dict[str, int], unk_token: str = "[UNK]",
                   prefix: str = "##") -> List[str]:
    """Splits one word into pieces; the whole word becomes [UNK] if any part cannot be matched."""
    if len(word) > MAX_INPUT_CHARS_PER_WORD:
        return [unk_token]
    pieces: List[str] = []
    start = 0
    while start < len(word):
        end = len(word)
        found = None
        while start < end:
            candidate = word[start:end]
            if start > 0:
                candidate = prefix + candidate
            if candidate in token_to_id:
                found = candidate
                break
            end -= 1
        if found is None:
            return [unk_token]
        pieces.append(found)
        start = end
    return pieces


class WordPieceRef:
    """BasicTokenizer + WordpieceTokenizer over a token list (ids are positions in that list)."""

    def __init__(self, tokens: Sequence[str], do_lower_case: bool, do_strip_accents: bool):
        self.tokens = tuple(tokens)
        self.token_to_id = {t: i for i, t in enumerate(self.tokens)}
        self.do_lower_case = do_lower_case
        self.do_strip_accents = do_strip_accents
        self._cache: Dict[str, List[str]] = {}

    def words_and_pieces(self, text: str) -> List[Tuple[str, List[str]]]:
        """Each basic-tokenizer word with its pieces (memoised: text has a Zipfian word distribution)."""
        out = []
        for word in split_words(text, self.do_lower_case, self.do_strip_accents):
            pieces = self._cache.get(word)
            if pieces is None:
                pieces = wordpiece_word(word, self.token_to_id)
                if len(self._cache) < 1_000_000:
                    self._cache[word] = pieces
            out.append((word, pieces))
        return out

    def tokenize(self, text: str) -> List[str]:
        return [p for _, pieces in self.words_and_pieces(text) for p in pieces]

    def encode(self, text: str) -> List[int]:
        return [self.token_to_id[p] for p in self.tokenize(text)]
