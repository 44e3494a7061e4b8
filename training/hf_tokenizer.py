"""Hugging Face tokenizer files (tokenizer.json, tokenizer_config.json, vocab.txt / spiece.model) for a dataset's
vocabulary that give the pipeline's token ids.

The files are built with the `tokenizers` library (a pipeline dependency), not transformers. tokenizer_config.json
names the generic `PreTrainedTokenizerFast` class so that transformers 4.x and 5.x both use tokenizer.json as
written: transformers 5's BertTokenizer/AlbertTokenizer rebuild their pipeline from vocab.txt/spiece.model and
flags, which changes ids (WordPiece's 100-character word limit instead of google-research/bert's 200; ALBERT's
``/'' -> " rewrite that google-research/albert and the pipeline do not do). The casing flags are still written
to tokenizer_config.json for reading.
"""
import json
import os
import shutil
from typing import Any, Dict, List, Optional, Tuple

WORDPIECE_MAX_CHARS = 200  # google-research/bert WordpieceTokenizer max_input_chars_per_word


def _write_json(path: str, data: Dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")


def _read_local(path: str) -> bytes:
    from vocab.vocab_file import _read_bytes  # pylint: disable=import-outside-toplevel
    return _read_bytes(path)


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    result, shift = 0, 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _proto_fields(data: bytes) -> List[Tuple[int, int, Any]]:
    """(field number, wire type, value) of one protobuf message level; length-delimited values as bytes."""
    out, pos = [], 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 2:
            n, pos = _varint(data, pos)
            value, pos = data[pos:pos + n], pos + n
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((field, wire, value))
    return out


def spm_normalizer_spec(model_bytes: bytes) -> Dict[str, Any]:
    """NormalizerSpec of a SentencePiece ModelProto (field 3): name, precompiled_charsmap and the whitespace
    flags, read from the wire format (sentencepiece's generated protobuf module needs a matching protobuf)."""
    spec = {"name": "", "precompiled_charsmap": b"", "add_dummy_prefix": True, "remove_extra_whitespaces": True}
    for field, _, value in _proto_fields(model_bytes):
        if field == 3:
            for sub, _, v in _proto_fields(value):
                if sub == 1:
                    spec["name"] = v.decode("utf-8")
                elif sub == 2:
                    spec["precompiled_charsmap"] = bytes(v)
                elif sub == 3:
                    spec["add_dummy_prefix"] = bool(v)
                elif sub == 4:
                    spec["remove_extra_whitespaces"] = bool(v)
    return spec


def spm_model_type(model_bytes: bytes) -> int:
    """TrainerSpec.model_type of a ModelProto (field 2, its field 3): 1 unigram (default), 2 BPE, 3 word, 4 char."""
    for field, _, value in _proto_fields(model_bytes):
        if field == 2:
            for sub, _, v in _proto_fields(value):
                if sub == 3:
                    return int(v)
    return 1


def _bpe_model(sp, unk_piece: str):
    """tokenizers BPE equal to sentencepiece's BPE: every split of a piece into two pieces is a merge, ranked by
    the merged piece's score (sentencepiece merges the adjacent pair whose concatenation scores highest)."""
    from tokenizers.models import BPE  # pylint: disable=import-outside-toplevel
    size = sp.get_piece_size()
    vocab = {sp.id_to_piece(i): i for i in range(size)}
    merges = []
    for i in range(size):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        piece = sp.id_to_piece(i)
        for k in range(1, len(piece)):
            left, right = piece[:k], piece[k:]
            if left in vocab and right in vocab:
                merges.append((-sp.get_score(i), i, vocab[left], vocab[right], left, right))
    merges.sort()
    return BPE(vocab, [(m[4], m[5]) for m in merges], unk_token=unk_piece, fuse_unk=True, byte_fallback=False)


def _post_processor(cls: str, sep: str, cls_id: int, sep_id: int, pair_type: int):
    from tokenizers import processors  # pylint: disable=import-outside-toplevel
    return processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:{pair_type} {sep}:{pair_type}",
        special_tokens=[(cls, cls_id), (sep, sep_id)])


def wordpiece_tokenizer(vocab_file: str, do_lower_case: bool, strip_accents: bool, type_vocab_size: int = 2):
    """A `tokenizers.Tokenizer` equal to google-research/bert's FullTokenizer on ordinary text, with the
    vocabulary's own special-token ids."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers  # pylint: disable=import-outside-toplevel
    from tokenizers.models import WordPiece  # pylint: disable=import-outside-toplevel
    from vocab.vocab_file import load_vocab  # pylint: disable=import-outside-toplevel
    vocab = load_vocab(vocab_file)
    ids = vocab.special_ids()
    tok = Tokenizer(WordPiece(dict(vocab.token_to_id), unk_token="[UNK]", continuing_subword_prefix="##",
                              max_input_chars_per_word=WORDPIECE_MAX_CHARS))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=bool(strip_accents), lowercase=bool(do_lower_case))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.post_processor = _post_processor("[CLS]", "[SEP]", ids["[CLS]"], ids["[SEP]"], 1 if type_vocab_size > 1 else 0)
    return tok, vocab


def sentencepiece_tokenizer(model_file: str, do_lower_case: bool, albert_preprocess: Optional[bool] = None,
                            presplit_chars: Optional[str] = None, type_vocab_size: int = 2):
    """A `tokenizers.Tokenizer` (Unigram) equal to transforms.sentencepiece_tokenizer on ordinary text:
    with albert_preprocess (default: do_lower_case) NFKD + accents dropped (+ lower case), the pre-split
    (a space after each of `presplit_chars`), then the model's own normalisation (precompiled charsmap),
    whitespace handling and the "▁" prefix."""
    import sentencepiece as spm  # pylint: disable=import-outside-toplevel
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers  # pylint: disable=import-outside-toplevel
    from tokenizers.models import Unigram  # pylint: disable=import-outside-toplevel
    from vocab.spm_model import load_spm_vocab  # pylint: disable=import-outside-toplevel
    data = _read_local(model_file)
    vocab = load_spm_vocab(model_file)
    sp = spm.SentencePieceProcessor(model_proto=data)
    pieces = [(sp.id_to_piece(i), float(sp.get_score(i))) for i in range(sp.get_piece_size())]
    spec = spm_normalizer_spec(data)
    if albert_preprocess is None:
        albert_preprocess = do_lower_case
    kind = spm_model_type(data)
    if kind == 1:
        tok = Tokenizer(Unigram(pieces, unk_id=sp.unk_id(), byte_fallback=False))
    elif kind == 2:
        tok = Tokenizer(_bpe_model(sp, sp.id_to_piece(sp.unk_id())))
    else:
        raise ValueError(f"{model_file}: SentencePiece model type {kind} (word/char) has no Hugging Face export; "
                         "only unigram and BPE models do")
    steps = []
    if albert_preprocess:
        steps += [normalizers.NFKD(), normalizers.StripAccents()]
    if do_lower_case:
        steps.append(normalizers.Lowercase())
    if presplit_chars:
        # transforms/presplit.py: a space after every pre-split character except a line's last one.
        steps += [normalizers.Replace(c, c + " ") for c in presplit_chars]
        steps.append(normalizers.Strip(left=False, right=True))
    if spec["precompiled_charsmap"]:
        steps.append(normalizers.Precompiled(spec["precompiled_charsmap"]))
    if steps:
        tok.normalizer = normalizers.Sequence(steps)
    scheme = "always" if spec["add_dummy_prefix"] else "never"
    metaspace = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme=scheme)
    # sentencepiece collapses whitespace runs only with remove_extra_whitespaces (pre-split models turn it
    # off so that every added space stays a "▁").
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), metaspace]) \
        if spec["remove_extra_whitespaces"] else metaspace
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme=scheme)
    ids = vocab.token_to_id
    tok.post_processor = _post_processor("[CLS]", "[SEP]", ids["[CLS]"], ids["[SEP]"], 1 if type_vocab_size > 1 else 0)
    return tok, vocab


def vocab_settings(vocab_path: str, do_lower_case: Optional[bool], strip_accents: Optional[bool]
                   ) -> Dict[str, Any]:
    """Casing and pre-split for a vocabulary: explicit values (the dataset manifest's) win, then the
    vocabulary's vocab_config.json, then BERT's defaults (strip_accents follows do_lower_case)."""
    from vocab.casing import read_vocab_config  # pylint: disable=import-outside-toplevel
    sidecar = read_vocab_config(vocab_path) or {}
    lower = do_lower_case if do_lower_case is not None else sidecar.get("do_lower_case")
    lower = True if lower is None else bool(lower)
    strip = strip_accents if strip_accents is not None else sidecar.get("strip_accents")
    strip = lower if strip is None else bool(strip)
    presplit = sidecar.get("presplit_chars") or None
    if isinstance(presplit, (list, tuple)):
        presplit = "".join(presplit)
    return {"do_lower_case": lower, "strip_accents": strip, "presplit_chars": presplit}


def write_tokenizer(output_dir: str, vocab_path: str, do_lower_case: Optional[bool] = None,
                    strip_accents: Optional[bool] = None, type_vocab_size: int = 2,
                    model_max_length: int = 512) -> Dict[str, Any]:
    """Writes the tokenizer files for `vocab_path` (vocab.txt or a SentencePiece .model) into output_dir.

    Returns what was written: kind, casing, special ids, file names."""
    settings = vocab_settings(vocab_path, do_lower_case, strip_accents)
    lower, strip = settings["do_lower_case"], settings["strip_accents"]
    os.makedirs(output_dir, exist_ok=True)
    config: Dict[str, Any] = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length,
                              "do_lower_case": lower, "clean_up_tokenization_spaces": False}
    if vocab_path.endswith(".model"):
        tok, vocab = sentencepiece_tokenizer(vocab_path, lower, albert_preprocess=lower,
                                             presplit_chars=settings["presplit_chars"],
                                             type_vocab_size=type_vocab_size)
        with open(os.path.join(output_dir, "spiece.model"), "wb") as f:
            f.write(_read_local(vocab_path))
        specials = {"pad_token": "<pad>", "unk_token": "<unk>", "cls_token": "[CLS]", "sep_token": "[SEP]",
                    "mask_token": "[MASK]", "bos_token": "[CLS]", "eos_token": "[SEP]"}
        # AlbertTokenizer's names for the same settings (keep_accents: accents are kept unless lower-casing).
        config.update(keep_accents=not lower, remove_space=True)
        files = ["spiece.model"]
        kind = "sentencepiece"
    else:
        tok, vocab = wordpiece_tokenizer(vocab_path, lower, strip, type_vocab_size)
        if "://" in vocab_path:
            with open(os.path.join(output_dir, "vocab.txt"), "wb") as f:
                f.write(_read_local(vocab_path))
        else:
            shutil.copyfile(vocab_path, os.path.join(output_dir, "vocab.txt"))
        specials = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                    "mask_token": "[MASK]"}
        config.update(strip_accents=strip, tokenize_chinese_chars=True)
        files = ["vocab.txt"]
        kind = "wordpiece"
    if settings["presplit_chars"]:
        config["presplit_chars"] = settings["presplit_chars"]
    tok.add_special_tokens(list(specials.values()))
    tok.save(os.path.join(output_dir, "tokenizer.json"))
    config.update(specials)
    config["model_input_names"] = (["input_ids", "token_type_ids", "attention_mask"] if type_vocab_size > 1
                                   else ["input_ids", "attention_mask"])
    _write_json(os.path.join(output_dir, "tokenizer_config.json"), config)
    _write_json(os.path.join(output_dir, "special_tokens_map.json"), specials)
    ids = vocab.token_to_id
    return {"kind": kind, "do_lower_case": lower, "strip_accents": strip, "presplit_chars": settings["presplit_chars"],
            "special_ids": {t: ids[t] for t in specials.values() if t in ids}, "vocab_size": vocab.size,
            "files": files + ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]}
