"""google-research/albert `create_pretraining_data.py` flag spellings accepted by `bertbeam build`."""
import argparse
import logging
from typing import List

from pipeline import flags as flaglib

# Boolean ALBERT flags, for absl's `--flag True` spelling (see flags.normalize_argv).
ALBERT_BOOL_FLAGS = ("keep_accents", "random_next_sentence", "do_permutation")


_LOGGED: set = set()


class AlbertFlagError(ValueError):
    """An ALBERT flag value bertbeam cannot honour; the message names the flag."""


def add_albert_aliases(parser: argparse.ArgumentParser) -> None:
    """ALBERT's names for flags bertbeam already has (--ngram is declared with --max_ngram_size)."""
    flaglib.add_bool(parser, "keep_accents", None,
                     "ALBERT: keep accents when lower casing (= --strip_accents=False).")
    flaglib.add_bool(parser, "random_next_sentence", None,
                     "ALBERT: with --pairing unset, False builds sentence-order (SOP) pairs as ALBERT does, "
                     "True BERT next-sentence (NSP) pairs.")
    flaglib.add_bool(parser, "do_permutation", None,
                     "ALBERT: permuted sentence order; only False is supported.")


def apply_albert_aliases(args: argparse.Namespace, default_pairing: str = "nsp") -> List[str]:
    """Resolves the ALBERT spellings onto bertbeam's flags in place; returns notes for the log.

    Raises AlbertFlagError for --do_permutation=True (not implemented) and for values that contradict
    bertbeam's own flags (e.g. --keep_accents=True with --strip_accents=True).
    """
    notes = []
    if args.do_permutation:
        raise AlbertFlagError("--do_permutation=True is not supported (ALBERT's sentence permutation task); "
                              "use --do_permutation=False, --pairing sop or --pairing none")
    if args.keep_accents is not None:
        if args.strip_accents is not None and args.strip_accents == args.keep_accents:
            raise AlbertFlagError(f"--keep_accents={args.keep_accents} contradicts "
                                  f"--strip_accents={args.strip_accents}; give one of them")
        args.strip_accents = not args.keep_accents
    rns = args.random_next_sentence
    if args.pairing is None:
        args.pairing = default_pairing if rns is None else ("nsp" if rns else "sop")
        if rns is not None:
            notes.append(f"--random_next_sentence={rns}: --pairing={args.pairing} (as ALBERT)")
    elif rns is not None:
        if args.pairing == "none":
            notes.append(f"--random_next_sentence={rns} ignored: --pairing=none builds no sentence pairs")
        elif (args.pairing == "nsp") != rns:
            raise AlbertFlagError(f"--random_next_sentence={rns} contradicts --pairing={args.pairing} "
                                  f"(ALBERT: True is nsp, False is sop)")
    for note in notes:
        if note not in _LOGGED:  # parse_args runs more than once per command: say it once
            _LOGGED.add(note)
            (logging.warning if "ignored" in note else logging.info)("%s", note)
    return notes
