"""`bertbeam segment --lang L`: paragraphs (one a line) on stdin -> sentences (one a line), blank line after each."""
import argparse
import io
import logging
import sys
from typing import Iterable, List, Optional, Sequence, TextIO


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    from pipeline.flags import ArgumentParser  # pylint: disable=import-outside-toplevel
    p = ArgumentParser(prog="bertbeam segment", description=__doc__)
    p.add_argument("--lang", default="nb", help="segmentation rules: no/nb, nn, da, sv, en, bo (Tibetan); others: generic")
    p.add_argument("--input_file", default="-", help="paragraphs, one a line ('-' = stdin)")
    p.add_argument("--output_file", default="-", help="sentences, one a line ('-' = stdout)")
    return p.parse_args(list(argv))


def segment_stream(lines: Iterable[str], out: TextIO, lang: str) -> int:
    """Writes the sentences of each input line, then an empty line; returns the paragraph count.

    An empty input line still gets its (empty) paragraph block, so output blocks stay aligned
    with input lines.
    """
    from transforms.segment import Segmenter

    seg = Segmenter(lang)
    n = 0
    write = out.write
    for line in lines:
        sents: List[str] = seg.split(line.rstrip("\r\n"))
        if sents:
            write("\n".join(sents))
            write("\n")
        write("\n")
        n += 1
    return n


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="bertbeam segment: %(message)s")
    src = (io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace") if args.input_file == "-"
           else open(args.input_file, encoding="utf-8", errors="replace"))
    dst = (io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n") if args.output_file == "-"
           else open(args.output_file, "w", encoding="utf-8", newline="\n"))
    try:
        segment_stream(src, dst, args.lang)
    finally:
        dst.flush()
        if args.input_file != "-":
            src.close()
        if args.output_file != "-":
            dst.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
