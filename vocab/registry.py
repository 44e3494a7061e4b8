"""Model classes: each names its vocabulary, casing, whole-word-masking default and model config.

`build` and training take `--model_class NAME` and call `apply_model_class_defaults`, where explicit flags
win. The `gs://` vocabulary paths are the seed team's bucket layout: defaults that users override with
`--vocab_file` (any local or gs:// path); `bertbeam vocab validate --vocab_file ...` checks one.
"""
import dataclasses
from typing import Any, Dict, Mapping, Optional

# BERT-base / BERT-large / ALBERT-base shapes as in the published bert_config.json files.
_BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
              "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
              "max_position_embeddings": 512, "type_vocab_size": 2, "initializer_range": 0.02}
_BERT_LARGE = dict(_BERT_BASE, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                   intermediate_size=4096)
_ALBERT_BASE = {"embedding_size": 128, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                "intermediate_size": 3072, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
                "attention_probs_dropout_prob": 0.0, "max_position_embeddings": 512, "type_vocab_size": 2,
                "initializer_range": 0.02, "num_hidden_groups": 1, "inner_group_num": 1, "down_scale_factor": 1,
                "net_structure_type": 0, "gap_size": 0, "num_memory_blocks": 0, "layers_to_keep": []}

_SEED_BUCKET = "gs://notram-west4-a/vocab"  # the seed team's layout; override with --vocab_file


@dataclasses.dataclass(frozen=True)
class ModelClass:
    """One registered model class. `vocab_file` is a default location (local path or gs://)."""

    name: str
    model_type: str  # "bert" or "albert"
    vocab_file: str
    do_lower_case: bool
    strip_accents: bool
    do_whole_word_mask: bool
    config: Mapping[str, Any]
    description: str = ""

    @property
    def vocab_kind(self) -> str:
        return "sentencepiece" if self.model_type == "albert" else "wordpiece"

    def bert_config(self) -> Dict[str, Any]:
        """The bert_config.json / albert_config.json content (a fresh dict)."""
        return dict(self.config)


def _cls(name: str, model_type: str, vocab_file: str, lower: bool, strip: bool, wwm: bool, shape: Mapping,
         vocab_size: int, description: str) -> ModelClass:
    return ModelClass(name=name, model_type=model_type, vocab_file=vocab_file, do_lower_case=lower,
                      strip_accents=strip, do_whole_word_mask=wwm,
                      config=dict(shape, vocab_size=vocab_size), description=description)


MODEL_CLASSES: Dict[str, ModelClass] = {c.name: c for c in (
    _cls("bert_multi_cased", "bert", f"{_SEED_BUCKET}/bert_multi_cased/vocab.txt", False, False, True,
         _BERT_BASE, 119547, "mBERT (cased, 104 languages), continued pretraining with whole-word masking"),
    _cls("bert_base_norwegian_cased", "bert", f"{_SEED_BUCKET}/norwegian_cased_50k/vocab.txt", False, False,
         True, _BERT_BASE, 50000, "BERT-base on a 50,000-token cased Norwegian WordPiece vocabulary"),
    # Uncased Norwegian keeps accents: stripping would fold "på" into "pa" and "får" into "far".
    _cls("bert_base_norwegian_uncased", "bert", f"{_SEED_BUCKET}/norwegian_uncased_50k/vocab.txt", True,
         False, True, _BERT_BASE, 50000, "BERT-base on a 50,000-token uncased Norwegian vocabulary, accents kept"),
    # The seed's 50,500-token Scandinavian vocabulary was generated from accent-stripped text (no token
    # holds "å"/"é"/"ä"), so it must be used with strip_accents=True: keeping accents turns 8.6% of the
    # words of no_ud_dev.txt into [UNK] ("på" -> [UNK]) against 0% when stripping.
    _cls("bert_base_scandinavian_uncased", "bert",
         f"{_SEED_BUCKET}/scandinavian_oscar_wiki_uncased_50k/vocab.txt", True, True, True, _BERT_BASE, 50500,
         "BERT-base on a 50,500-token uncased Swedish+Norwegian+Danish vocabulary (accent-stripped)"),
    _cls("bert_large_norwegian_uncased", "bert", f"{_SEED_BUCKET}/norwegian_uncased_50k/vocab.txt", True,
         False, True, _BERT_LARGE, 50000, "BERT-large on the uncased Norwegian vocabulary, accents kept"),
    _cls("albert_base_v2", "albert", f"{_SEED_BUCKET}/albert_base_v2/30k-clean.model", True, True, False,
         _ALBERT_BASE, 30000, "ALBERT-base v2 on a 30,000-piece SentencePiece unigram model (lowercased)"),
)}

# Flag name -> ModelClass attribute for the defaults a model class fills in.
_FLAG_FIELDS = {"vocab_file": "vocab_file", "do_lower_case": "do_lower_case", "strip_accents": "strip_accents",
                "do_whole_word_mask": "do_whole_word_mask", "model_type": "model_type"}


def get_model_class(name: str) -> ModelClass:
    """The registered class, or a ValueError listing the known names."""
    try:
        return MODEL_CLASSES[name]
    except KeyError:
        raise ValueError(f"unknown --model_class {name!r}; known: {', '.join(sorted(MODEL_CLASSES))}") from None


def apply_model_class_defaults(model_class_name: Optional[str], explicit: Mapping[str, Any]) -> Dict[str, Any]:
    """Flags with the model class's defaults filled in where `explicit` lacks them (or holds None).

    `explicit` should contain only flags the user actually gave (None counts as not given), so
    `--do_lower_case=False` overrides an uncased class while an unset flag takes the class's value.
    The result also carries `bert_config` (the model config dict) unless the caller gave one.
    """
    out = {k: v for k, v in explicit.items() if v is not None}
    if not model_class_name:
        return out
    mc = get_model_class(model_class_name)
    for flag, attr in _FLAG_FIELDS.items():
        out.setdefault(flag, getattr(mc, attr))
    out.setdefault("bert_config", mc.bert_config())
    out.setdefault("model_class", mc.name)
    return out
