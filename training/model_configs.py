"""Model configurations: the fields of google-research's bert_config.json / albert_config.json, and model classes."""
import dataclasses
import json
from typing import Any, Dict, Optional


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """bert_config.json (and albert_config.json) fields used by the Flax models."""

    vocab_size: int = 30522  # rows of the word embedding / MLM output
    hidden_size: int = 768  # H
    num_hidden_layers: int = 12  # L
    num_attention_heads: int = 12  # A
    intermediate_size: int = 3072  # feed-forward inner size
    hidden_act: str = "gelu"  # gelu (tanh approximation, as the original) | gelu_exact | relu | tanh
    hidden_dropout_prob: float = 0.1  # dropout after embeddings, attention output and FFN output
    attention_probs_dropout_prob: float = 0.1  # dropout on attention probabilities
    max_position_embeddings: int = 512  # rows of the position embedding
    type_vocab_size: int = 2  # rows of the token-type (segment) embedding
    initializer_range: float = 0.02  # stddev of the truncated-normal initialiser
    model_type: str = "bert"  # bert | albert
    embedding_size: int = 0  # ALBERT factorised embedding size E (0 = hidden_size, i.e. BERT)
    num_hidden_groups: int = 1  # ALBERT: groups of shared layers
    inner_group_num: int = 1  # ALBERT: layers inside each group

    @property
    def is_albert(self) -> bool:
        return self.model_type == "albert"

    @property
    def embed_dim(self) -> int:
        return self.embedding_size or self.hidden_size

    def to_json_dict(self) -> Dict[str, Any]:
        """The original JSON layout (ALBERT-only fields only for ALBERT)."""
        d = dataclasses.asdict(self)
        d.pop("model_type")
        if not self.is_albert:
            for k in ("embedding_size", "num_hidden_groups", "inner_group_num"):
                d.pop(k)
        return d


def from_dict(data: Dict[str, Any], model_type: str = "bert") -> ModelConfig:
    """Builds a ModelConfig from an original config dict, ignoring fields the model does not use
    (directionality, pooler_*, net_structure_type with its defaults, ...)."""
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    kwargs = {k: v for k, v in data.items() if k in names}
    kwargs["model_type"] = model_type
    if model_type == "albert":
        kwargs.setdefault("embedding_size", 128)
        for key, neutral in (("net_structure_type", 0), ("down_scale_factor", 1), ("gap_size", 0),
                             ("num_memory_blocks", 0)):
            if data.get(key, neutral) != neutral:
                raise ValueError(f"albert config: {key}={data[key]} is not supported (only the standard ALBERT)")
    cfg = ModelConfig(**kwargs)
    if cfg.hidden_size % cfg.num_attention_heads:
        raise ValueError(f"hidden_size {cfg.hidden_size} is not a multiple of num_attention_heads "
                         f"{cfg.num_attention_heads}")
    if cfg.is_albert and cfg.num_hidden_layers % cfg.num_hidden_groups:
        raise ValueError("albert config: num_hidden_layers must be a multiple of num_hidden_groups")
    return cfg


def read_json(path: str) -> Dict[str, Any]:
    if "://" in path:
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        with tf.io.gfile.GFile(path, "r") as f:
            return json.loads(f.read())
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_config_file(path: str, albert: bool = False) -> ModelConfig:
    """Reads an original bert_config.json (or albert_config.json with albert=True), or a transformers
    config.json (its model_type decides; hidden_act translated, see training/hf_checkpoint.py)."""
    data = read_json(path)
    from training import hf_checkpoint  # pylint: disable=import-outside-toplevel
    if hf_checkpoint.is_hf_config(data):
        return hf_checkpoint.model_config_from_hf(data)
    return from_dict(data, "albert" if albert else "bert")


_BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                  hidden_act="gelu", hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                  max_position_embeddings=512, type_vocab_size=2, initializer_range=0.02)

# Built-in model classes (used when vocab/registry.py does not know the name): dims of Google's releases.
BUILTIN_MODEL_CLASSES: Dict[str, Dict[str, Any]] = {
    "bert_base": dict(_BERT_BASE, vocab_size=30522, model_type="bert"),
    "bert_base_uncased": dict(_BERT_BASE, vocab_size=30522, model_type="bert"),
    "bert_base_cased": dict(_BERT_BASE, vocab_size=28996, model_type="bert"),
    "bert_multi_cased": dict(_BERT_BASE, vocab_size=119547, model_type="bert"),
    "bert_large": dict(_BERT_BASE, vocab_size=30522, hidden_size=1024, num_hidden_layers=24,
                       num_attention_heads=16, intermediate_size=4096, model_type="bert"),
    "albert_base_v2": dict(_BERT_BASE, vocab_size=30000, attention_probs_dropout_prob=0.0,
                           hidden_dropout_prob=0.0, embedding_size=128, num_hidden_groups=1,
                           inner_group_num=1, model_type="albert"),
    "bert_tiny": dict(_BERT_BASE, vocab_size=30522, hidden_size=128, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=512, model_type="bert"),
}


@dataclasses.dataclass(frozen=True)
class ModelClass:
    """What a --model_class name resolves to."""

    name: str
    model: ModelConfig
    vocab_path: Optional[str] = None  # vocab.txt / .model the class was trained with (fingerprint check)
    do_lower_case: Optional[bool] = None
    init_checkpoint: Optional[str] = None  # pretrained checkpoint used when neither --init_* flag is given


def _from_registry(name: str) -> Optional[ModelClass]:
    """vocab/registry.py knows the seed runs' model classes (vocab file, casing, model config)."""
    try:
        from vocab import registry  # pylint: disable=import-outside-toplevel
    except ImportError:
        return None
    try:
        entry = registry.get_model_class(name)
    except (KeyError, ValueError):
        return None
    model_cfg = from_dict(dict(entry.config), entry.model_type)
    return ModelClass(name=name, model=model_cfg, vocab_path=entry.vocab_file or None,
                      do_lower_case=entry.do_lower_case,
                      init_checkpoint=getattr(entry, "init_checkpoint", None) or None)


def get_model_class(name: str) -> ModelClass:
    """Resolves --model_class: vocab/registry.py first, then the built-in table."""
    found = _from_registry(name)
    if found is not None:
        return found
    if name in BUILTIN_MODEL_CLASSES:
        spec = dict(BUILTIN_MODEL_CLASSES[name])
        kind = spec.pop("model_type")
        return ModelClass(name=name, model=from_dict(spec, kind))
    raise ValueError(f"unknown --model_class {name!r}; known: {sorted(BUILTIN_MODEL_CLASSES)} "
                     "(or give --bert_config_file / --albert_config_file)")
