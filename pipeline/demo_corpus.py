"""The embedded default corpus: CPython's own documentation topics (`pydoc_data.topics`) as documents."""
import re
from typing import Iterator, List


def _paragraphs(text: str) -> Iterator[str]:
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        # Code samples and tables are indented or full of symbols: keep prose only.
        prose = [line for line in lines if not line.startswith((">>>", "...", "|", "+-", "=="))]
        if prose:
            yield " ".join(prose)


def _sentences(paragraph: str) -> List[str]:
    # Split after sentence punctuation followed by a capital; good enough for documentation prose.
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z\"'(])", paragraph) if s.strip()]


def demo_documents() -> List[List[str]]:
    """One document per documentation topic, a sentence per entry, topics in sorted order."""
    from pydoc_data.topics import topics  # pylint: disable=import-outside-toplevel
    docs = []
    for name in sorted(topics):
        sentences = [s for p in _paragraphs(topics[name]) for s in _sentences(p)]
        if len(sentences) >= 2:
            docs.append(sentences)
    return docs


def write_bert_format(docs: List[List[str]], path: str) -> None:
    """BERT's input format: a sentence a line, a blank line between documents."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n\n".join("\n".join(doc) for doc in docs) + "\n")
