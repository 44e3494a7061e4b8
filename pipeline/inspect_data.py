"""`bertbeam inspect DIR`: the manifest's summary and the first instances decoded back to tokens."""
import itertools
import sys
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from pipeline import flags as flaglib
from pipeline.manifest import read_manifest
from transforms import fileio
from transforms.example_codec import decode_example
from transforms.tfrecord_io import read_records_from_path


def _load_tokens(manifest: Dict[str, Any], vocab_file: Optional[str]) -> Optional[List[str]]:
    path = vocab_file or manifest.get("vocab", {}).get("path")
    if not path:
        return None
    try:
        if manifest.get("vocab", {}).get("kind") == "sentencepiece":
            from vocab.spm_model import load_spm_vocab  # pylint: disable=import-outside-toplevel
            return list(load_spm_vocab(path).tokens)
        from vocab.vocab_file import load_vocab  # pylint: disable=import-outside-toplevel
        return list(load_vocab(path).tokens)
    except Exception as e:  # the dataset is still inspectable without its vocabulary
        print(f"(vocabulary {path} not readable: {e}; showing ids)", file=sys.stderr)
        return None


def _presplit_chars(manifest: Dict[str, Any], vocab_file: Optional[str]) -> Optional[str]:
    """The SentencePiece model's recorded pre-split ("" none); None for WordPiece (no text decoding)."""
    path = vocab_file or manifest.get("vocab", {}).get("path")
    if not path or manifest.get("vocab", {}).get("kind") != "sentencepiece":
        return None
    try:
        from transforms.sentencepiece_tokenizer import model_presplit_chars  # pylint: disable=C0415
        return model_presplit_chars(path)
    except Exception:  # pylint: disable=broad-except  # still decodable without the sidecar
        return ""


def decode_segments(ids: List[int], tokens: List[str], presplit_chars: str,
                    specials: Sequence[str] = ("[CLS]", "[SEP]", "<pad>", "[PAD]")) -> List[str]:
    """The text of each segment ([SEP]-separated) of SentencePiece ids, pre-split undone."""
    from transforms.presplit import decode_pieces  # pylint: disable=import-outside-toplevel
    segments: List[List[str]] = [[]]
    for i in ids:
        piece = tokens[i] if 0 <= i < len(tokens) else "<unk>"
        if piece == "[SEP]":
            segments.append([])
        elif piece not in specials:
            segments[-1].append(piece)
    return [decode_pieces(seg, presplit_chars) for seg in segments if seg]


def summary_lines(manifest: Dict[str, Any]) -> List[str]:
    train = manifest["counts"]["train"]
    docs = manifest.get("documents", {})
    lines = [
        f"format: {manifest.get('format')}  bertbeam {manifest.get('bertbeam_version')}  runner {manifest.get('runner')}",
        f"num_documents: {train['num_documents']}  num_instances: {train['num_instances']}  "
        f"shards: {len(manifest.get('shards', []))}  time_taken_min: {manifest.get('time_taken_min')}",
        "settings: " + "  ".join(f"{k}={manifest.get(k)}" for k in (
            "max_seq_length", "max_predictions_per_seq", "dupe_factor", "masked_lm_prob", "short_seq_prob",
            "random_seed", "do_lower_case", "do_whole_word_mask", "pairing", "masking", "max_ngram_size")),
        f"vocab: {manifest.get('vocab', {}).get('path')}  size {manifest.get('vocab', {}).get('size')}  "
        f"sha256 {str(manifest.get('vocab', {}).get('sha256'))[:16]}…",
        f"documents: read {docs.get('read')}  used {docs.get('used')}  dropped {docs.get('dropped')}",
        f"tokens: {manifest.get('tokens')}",
    ]
    return lines


def format_instance(index: int, features: Dict[str, np.ndarray], tokens: Optional[List[str]],
                    presplit_chars: Optional[str] = None) -> List[str]:
    def name(i: int) -> str:
        return tokens[i] if tokens is not None and 0 <= i < len(tokens) else str(i)

    n = int(features["input_mask"].sum())
    ids = features["input_ids"][:n].tolist()
    out = [f"--- instance {index}"]
    if "document_id" in features:
        doc_id = features["document_id"][0]
        out.append(f"document_id: {doc_id.decode('utf-8', 'replace') if isinstance(doc_id, bytes) else doc_id}")
    out.append("tokens: " + " ".join(name(i) for i in ids))
    out.append("segment_ids: " + " ".join(str(int(s)) for s in features["segment_ids"][:n]))
    if "masked_lm_positions" in features:
        k = int((features["masked_lm_weights"] > 0).sum())
        positions = features["masked_lm_positions"][:k].tolist()
        labels = features["masked_lm_ids"][:k].tolist()
        out.append("masked_lm_positions: " + " ".join(map(str, positions)))
        out.append("masked_lm_labels: " + " ".join(name(i) for i in labels))
        out.append("masked_lm_shown_as: " + " ".join(name(ids[p]) for p in positions))
    if tokens is not None and presplit_chars is not None:
        # SentencePiece: the text back, with the masked positions' labels put back in.
        original = list(ids)
        if "masked_lm_positions" in features:
            for p, label in zip(positions, labels):
                if 0 <= p < len(original):
                    original[p] = label
        for k, text in enumerate(decode_segments(original, tokens, presplit_chars)):
            out.append(f"text {'AB'[k] if k < 2 else k}: {text}")
    if "word_starts" in features:
        out.append("word_starts: " + "".join(str(int(s)) for s in features["word_starts"][:n]))
    if "next_sentence_labels" in features:
        out.append(f"next_sentence_labels: {int(features['next_sentence_labels'][0])}")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = flaglib.ArgumentParser(prog="bertbeam inspect", description=__doc__)
    parser.add_argument("output_dir", help="A folder written by `bertbeam build` (local or gs://).")
    parser.add_argument("--num_instances", type=int, default=5, help="How many instances to decode.")
    parser.add_argument("--vocab_file", default=None, help="Vocabulary to decode with (default: the manifest's).")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        manifest = read_manifest(args.output_dir)
    except (OSError, IOError, ValueError) as e:
        print(f"bertbeam inspect: error: {args.output_dir}: no readable manifest.json ({e}); "
              f"an interrupted build leaves none", file=sys.stderr)
        return 2
    print("\n".join(summary_lines(manifest)))
    tokens = _load_tokens(manifest, args.vocab_file)
    presplit_chars = _presplit_chars(manifest, args.vocab_file)
    compression = manifest.get("compression")
    shards = [fileio.join(args.output_dir, s["path"]) for s in manifest.get("shards", []) if s["num_instances"]]
    records = itertools.chain.from_iterable(read_records_from_path(p, compression) for p in shards)
    for index, record in enumerate(itertools.islice(records, args.num_instances)):
        print("\n".join(format_instance(index, decode_example(record), tokens, presplit_chars)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
