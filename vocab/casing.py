"""The casing sidecar (vocab_config.json next to a vocabulary): write it, read it, reconcile it with flags."""
import hashlib
import json
import logging
import os
import posixpath
import unicodedata
from typing import Any, Dict, Optional, Sequence, Tuple

from vocab.vocab_file import VocabError, _read_bytes

SIDECAR_NAME = "vocab_config.json"
SIDECAR_FORMAT = "bertbeam.vocab.v1"

_log = logging.getLogger(__name__)


def sidecar_path(vocab_path: str) -> str:
    """DIR/vocab_config.json for DIR/vocab.txt or DIR/x.model (works for gs:// paths too)."""
    join = posixpath.join if "://" in vocab_path else os.path.join
    dirname = posixpath.dirname(vocab_path) if "://" in vocab_path else os.path.dirname(vocab_path)
    return join(dirname, SIDECAR_NAME)


def file_sha256(path: str) -> str:
    return hashlib.sha256(_read_bytes(path)).hexdigest()


def make_vocab_config(vocab_path: str, do_lower_case: bool, strip_accents: bool, model: str,
                      vocab_size: int, **extra: Any) -> Dict[str, Any]:
    """The sidecar's content; sha256 ties it to the exact vocabulary file it describes."""
    config = {"format": SIDECAR_FORMAT, "vocab_file": os.path.basename(vocab_path),
              "do_lower_case": bool(do_lower_case), "strip_accents": bool(strip_accents),
              "model": model, "vocab_size": int(vocab_size), "sha256": file_sha256(vocab_path)}
    config.update(extra)
    return config


def write_vocab_config(vocab_path: str, config: Dict[str, Any]) -> str:
    """Writes the sidecar atomically next to a local vocabulary; returns its path."""
    path = sidecar_path(vocab_path)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, path)
    return path


def _sidecar_exists(path: str) -> bool:
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
        return FileSystems.exists(path)
    return os.path.exists(path)


def _as_bool(value: Any) -> Optional[bool]:
    # Foreign configs (HF tokenizer_config-like files) write "null"/"true" as strings; only real
    # booleans (or their unambiguous spellings) count, anything else means "not stated".
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def read_vocab_config(vocab_path: str) -> Optional[Dict[str, Any]]:
    """The sidecar next to `vocab_path` as a dict (None if there is none).

    Our own sidecars are checked against the vocabulary's sha256; a foreign `vocab_config.json` (the
    NbAiLab ones, HF-style) is read leniently: only real booleans for do_lower_case / strip_accents count.
    """
    path = sidecar_path(vocab_path)
    if not _sidecar_exists(path):
        return None
    raw = _read_bytes(path)
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise VocabError(f"{path}: casing sidecar is not valid JSON ({e})") from e
    if not isinstance(config, dict):
        raise VocabError(f"{path}: casing sidecar must be a JSON object")
    if config.get("format") == SIDECAR_FORMAT:
        expected = config.get("sha256")
        actual = file_sha256(vocab_path)
        if expected and expected != actual:
            raise VocabError(
                f"{path}: casing sidecar belongs to a different vocabulary (sha256 {expected[:12]}…, but "
                f"{vocab_path} has {actual[:12]}…); regenerate it with `bertbeam vocab` or delete it")
    out = dict(config)
    out["do_lower_case"] = _as_bool(config.get("do_lower_case"))
    out["strip_accents"] = _as_bool(config.get("strip_accents"))
    out["_sidecar_path"] = path
    return out


def infer_casing(tokens: Sequence[str]) -> Tuple[Optional[bool], Optional[bool]]:
    """(do_lower_case, strip_accents) as the vocabulary's content shows them; None where unclear.

    Uncased vocabularies hold (almost) no uppercase tokens (bert-base-uncased: 2 of 28,160, cased ones 16-30%);
    accent-stripped ones hold no token with a combining mark after NFD (the NbAiLab oscar_wiki
    vocabularies: 0, norwegian_uncased_50k: 3.8%). Small vocabularies say nothing.
    """
    alpha = 0
    upper = 0
    accented = 0
    for token in tokens:
        if token.startswith("[") and token.endswith("]") or token.startswith("<") and token.endswith(">"):
            continue
        body = token[2:] if token.startswith("##") else token.lstrip("\u2581")
        if not any(map(str.isalpha, body)):
            continue
        alpha += 1
        upper += any(map(str.isupper, body))
        if not body.isascii():  # NFD leaves ASCII as it is, and ASCII has no combining mark
            accented += "Mn" in map(unicodedata.category, unicodedata.normalize("NFD", body))
    if alpha < _MIN_ALPHA_TOKENS:
        return None, None
    lower = True if upper / alpha < 0.002 else False if upper / alpha > 0.02 else None
    strip = True if accented == 0 else False if accented / alpha > 0.002 else None
    if lower is False:
        strip = False  # cased BERT vocabularies never strip accents
    return lower, strip


_MIN_ALPHA_TOKENS = 500


def _vocab_tokens(vocab_path: str) -> Sequence[str]:
    from vocab.spm_model import load_any_vocab  # pylint: disable=import-outside-toplevel
    return load_any_vocab(vocab_path).tokens


def check_casing(vocab_path: str, do_lower_case: Optional[bool] = None,
                 strip_accents: Optional[bool] = None) -> Tuple[bool, bool]:
    """Reconciles explicit casing flags (None = flag not given) with the vocabulary; returns resolved bools.

    Order: explicit flag, else the casing sidecar, else the vocabulary's content (`infer_casing`), else
    BERT's defaults (do_lower_case=True, strip_accents=do_lower_case). An explicit flag that contradicts the
    sidecar is an error (VocabError); one that contradicts the content only warns (it may be deliberate).
    """
    config = read_vocab_config(vocab_path)
    side_lower = config.get("do_lower_case") if config else None
    side_strip = config.get("strip_accents") if config else None
    where = config["_sidecar_path"] if config else None
    if do_lower_case is not None and side_lower is not None and do_lower_case != side_lower:
        raise VocabError(
            f"casing mismatch: --do_lower_case={do_lower_case} but {where} says the vocabulary "
            f"{vocab_path} was built with do_lower_case={side_lower}; drop the flag or use a matching vocabulary")
    if strip_accents is not None and side_strip is not None and strip_accents != side_strip:
        raise VocabError(
            f"casing mismatch: --strip_accents={strip_accents} but {where} says the vocabulary "
            f"{vocab_path} was built with strip_accents={side_strip}; drop the flag or use a matching vocabulary")
    lower = do_lower_case if do_lower_case is not None else side_lower
    strip = strip_accents if strip_accents is not None else side_strip
    if lower is None or strip is None or not (config and config.get("format") == SIDECAR_FORMAT):
        seen_lower, seen_strip = infer_casing(_vocab_tokens(vocab_path))
        if lower is not None and seen_lower is not None and lower != seen_lower:
            _log.warning("%s: do_lower_case=%s but the vocabulary looks %s; many tokens will be unreachable "
                         "or words will split badly", vocab_path, lower, "uncased" if seen_lower else "cased")
        if lower is None:
            lower = seen_lower
            if lower is None:
                lower = True  # google-research/bert's flag default
                _log.warning("%s: no casing sidecar and no clear sign in the vocabulary; assuming "
                             "do_lower_case=True (BERT's default)", vocab_path)
        if strip is None:
            # Cased BERT never strips accents; uncased strips unless the vocabulary shows accented tokens.
            strip = lower and (seen_strip if seen_strip is not None else True)
        elif seen_strip is not None and strip != seen_strip and lower:
            _log.warning("%s: strip_accents=%s but the vocabulary %s accented tokens; accented words will "
                         "%s", vocab_path, strip, "has no" if seen_strip else "has",
                         "become [UNK] or split into pieces" if not strip else "lose their accents")
    return bool(lower), bool(strip)
