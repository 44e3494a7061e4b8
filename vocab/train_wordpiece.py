"""WordPiece training with HF tokenizers, written as a BERT-layout vocab.txt plus tokenizer.json."""
import json
import os
from typing import Callable, Dict, Iterable, List, Sequence

SPECIALS_AFTER_UNUSED = ("[UNK]", "[CLS]", "[SEP]", "[MASK]")


def bert_layout(learned: Sequence[str], num_unused_before: int = 99, num_unused_after: int = 100) -> List[str]:
    """BERT's id layout: [PAD] 0, [unused0..], [UNK] [CLS] [SEP] [MASK], more [unusedN], learned tokens.

    With the defaults [UNK]/[CLS]/[SEP]/[MASK] land on 100..103 as in bert-base-uncased, so checkpoints
    and tools that assume those ids keep working; [unusedN] slots let users add domain tokens later.
    """
    specials = {"[PAD]", *SPECIALS_AFTER_UNUSED}
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(num_unused_before)] + list(SPECIALS_AFTER_UNUSED)
    tokens += [f"[unused{i}]" for i in range(num_unused_before, num_unused_before + num_unused_after)]
    seen = set(tokens)
    for token in learned:
        # A learned token can never be whitespace (the pre-tokenizer splits on it) but guard anyway:
        # vocab.txt is one token a line, and the loader rejects such lines.
        if token in specials or token in seen or not token.strip() or len(token.split()) != 1:
            continue
        seen.add(token)
        tokens.append(token)
    return tokens


def _normalizer(do_lower_case: bool, strip_accents: bool):
    from tokenizers import normalizers  # pylint: disable=import-outside-toplevel
    return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                      strip_accents=bool(strip_accents), lowercase=bool(do_lower_case))


def _new_trainer_tokenizer(do_lower_case: bool, strip_accents: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers  # pylint: disable=import-outside-toplevel
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=200))
    tokenizer.normalizer = _normalizer(do_lower_case, strip_accents)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    return tokenizer


def train_wordpiece_tokens(sentences: Callable[[], Iterable[str]], vocab_size: int, do_lower_case: bool,
                           strip_accents: bool, num_reserved: int, min_frequency: int = 2,
                           limit_alphabet: int = 1000) -> List[str]:
    """Runs the HF WordPiece trainer; returns learned tokens (characters, ##characters, then merges in order).

    `sentences` is called twice: HF's trainer gives "##x" continuation characters ids in hash-map order,
    and merge ties are broken by id, so the same corpus can give different vocabularies
    (huggingface/tokenizers#1794). A first, merge-free pass finds the continuation characters; the real
    pass then declares them up front, sorted, which fixes every id and makes training reproducible.
    """
    from tokenizers import trainers  # pylint: disable=import-outside-toplevel
    specials = ["[PAD]", *SPECIALS_AFTER_UNUSED]
    probe = _new_trainer_tokenizer(do_lower_case, strip_accents)
    probe.train_from_iterator(sentences(), trainer=trainers.WordPieceTrainer(
        vocab_size=1, min_frequency=min_frequency, limit_alphabet=limit_alphabet, special_tokens=specials,
        continuing_subword_prefix="##", show_progress=False))
    continuations = sorted(t for t in probe.get_vocab() if t.startswith("##") and len(t) > 2)
    tokenizer = _new_trainer_tokenizer(do_lower_case, strip_accents)
    trainer = trainers.WordPieceTrainer(
        vocab_size=max(len(specials) + len(continuations) + 1, vocab_size - num_reserved),
        min_frequency=min_frequency, limit_alphabet=limit_alphabet, special_tokens=specials + continuations,
        continuing_subword_prefix="##", show_progress=False)
    tokenizer.train_from_iterator(sentences(), trainer=trainer)
    vocab: Dict[str, int] = tokenizer.get_vocab()
    ordered = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t not in specials]
    # BERT's order: single characters, then ##characters, then longer tokens (merge order here).
    chars = sorted(t for t in ordered if len(t) == 1)
    rest = [t for t in ordered if len(t) > 1 and t not in continuations]
    return chars + continuations + rest


def build_hf_tokenizer(tokens: Sequence[str], do_lower_case: bool, strip_accents: bool):
    """A `tokenizers.Tokenizer` over exactly vocab.txt's ids, with BERT's normaliser and [CLS]/[SEP] template."""
    # pylint: disable=import-outside-toplevel
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    vocab = {t: i for i, t in enumerate(tokens)}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=200))
    tokenizer.normalizer = _normalizer(do_lower_case, strip_accents)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens(["[PAD]", *SPECIALS_AFTER_UNUSED])
    return tokenizer


def write_wordpiece_outputs(out_dir: str, tokens: Sequence[str], do_lower_case: bool,
                            strip_accents: bool) -> Dict[str, str]:
    """Writes vocab.txt (LF, UTF-8), tokenizer.json and HF tokenizer_config.json; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    vocab_path = os.path.join(out_dir, "vocab.txt")
    with open(vocab_path, "w", encoding="utf-8", newline="\n") as f:
        f.write("".join(t + "\n" for t in tokens))
    tokenizer_path = os.path.join(out_dir, "tokenizer.json")
    build_hf_tokenizer(tokens, do_lower_case, strip_accents).save(tokenizer_path)
    # Lets transformers' BertTokenizer(Fast).from_pretrained(out_dir) pick the right casing.
    hf_config_path = os.path.join(out_dir, "tokenizer_config.json")
    with open(hf_config_path, "w", encoding="utf-8") as f:
        json.dump({"tokenizer_class": "BertTokenizer", "do_lower_case": bool(do_lower_case),
                   "strip_accents": bool(strip_accents), "model_max_length": 512}, f, indent=2)
        f.write("\n")
    return {"vocab": vocab_path, "tokenizer_json": tokenizer_path, "tokenizer_config": hf_config_path}


def check_wordpiece_size(size: int, asked: int, allow_smaller_vocab: bool = False, min_frequency: int = 2) -> None:
    """Stops (VocabError) when vocab.txt would be more than 1 % smaller than --vocab_size, unless allowed."""
    from vocab.vocab_file import VocabError  # pylint: disable=import-outside-toplevel
    if size >= asked * 0.99 or allow_smaller_vocab:
        return
    raise VocabError(
        f"WordPiece reached only {size:,} tokens of the {asked:,} asked for (more than 1% short); nothing was "
        f"written. Reason: the text has too few distinct characters and words occurring at least "
        f"--min_frequency={min_frequency} times to merge into more tokens. Use more text, a lower "
        f"--min_frequency or a smaller --vocab_size; --allow_smaller_vocab writes the {size:,}-token "
        f"vocabulary anyway.")
