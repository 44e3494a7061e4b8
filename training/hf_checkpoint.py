"""Hugging Face BERT/ALBERT folders <-> the Flax parameter tree: name mapping, config.json, safetensors and .bin.

Nothing here imports torch or transformers. `model.safetensors` is read and written with numpy (the format is
an 8-byte header length, a JSON header of dtype/shape/offsets, then raw little-endian bytes);
`pytorch_model.bin` (torch's zip pickle) is read by a restricted unpickler that only rebuilds tensors.
Names: the Flax tree's '/'-joined paths are Google's TF names (models.py); a Dense `kernel` [in, out] is a
torch Linear `weight` [out, in] (transposed), LayerNorm gamma/beta are weight/bias, embeddings and
`cls/seq_relationship/output_weights` ([2, H], as torch stores it) are copied as they are.
"""
import json
import os
import pickle
import re
import struct
import zipfile
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from training.model_configs import ModelConfig

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN_NAME = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"
CONFIG_NAME = "config.json"


class HFCheckpointError(ValueError):
    """A Hugging Face folder cannot be read or does not fit the model; the message says which file/names."""


# ---------------------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------------------

# ALBERT: module paths inside one shared layer (TF inner_group_I/... -> HF albert_layers.I....).
_ALBERT_LAYER = (("attention_1/self/query", "attention.query"), ("attention_1/self/key", "attention.key"),
                 ("attention_1/self/value", "attention.value"), ("attention_1/output/dense", "attention.dense"),
                 ("LayerNorm", "attention.LayerNorm"), ("ffn_1/intermediate/dense", "ffn"),
                 ("ffn_1/intermediate/output/dense", "ffn_output"), ("LayerNorm_1", "full_layer_layer_norm"))

# Whole-module renames (TF module path, HF module path); {n}/{g}/{i} are layer/group/inner indices.
_BERT_MODULES = (("bert/embeddings/LayerNorm", "bert.embeddings.LayerNorm"),
                 ("bert/encoder/layer_{n}/{rest}", "bert.encoder.layer.{n}.{rest}"),
                 ("bert/pooler/dense", "bert.pooler.dense"),
                 ("cls/predictions/transform/dense", "cls.predictions.transform.dense"),
                 ("cls/predictions/transform/LayerNorm", "cls.predictions.transform.LayerNorm"))
_ALBERT_MODULES = (("bert/embeddings/LayerNorm", "albert.embeddings.LayerNorm"),
                   ("bert/encoder/embedding_hidden_mapping_in", "albert.encoder.embedding_hidden_mapping_in"),
                   ("bert/pooler/dense", "albert.pooler"),
                   ("cls/predictions/transform/dense", "predictions.dense"),
                   ("cls/predictions/transform/LayerNorm", "predictions.LayerNorm"))
# Parameters that are whole tensors (no kernel/bias leaf): (TF name, HF name).
_BERT_TENSORS = (("bert/embeddings/word_embeddings", "bert.embeddings.word_embeddings.weight"),
                 ("bert/embeddings/position_embeddings", "bert.embeddings.position_embeddings.weight"),
                 ("bert/embeddings/token_type_embeddings", "bert.embeddings.token_type_embeddings.weight"),
                 ("cls/predictions/output_bias", "cls.predictions.bias"),
                 ("cls/seq_relationship/output_weights", "cls.seq_relationship.weight"),
                 ("cls/seq_relationship/output_bias", "cls.seq_relationship.bias"))
_ALBERT_TENSORS = (("bert/embeddings/word_embeddings", "albert.embeddings.word_embeddings.weight"),
                   ("bert/embeddings/position_embeddings", "albert.embeddings.position_embeddings.weight"),
                   ("bert/embeddings/token_type_embeddings", "albert.embeddings.token_type_embeddings.weight"),
                   ("cls/predictions/output_bias", "predictions.bias"),
                   ("cls/seq_relationship/output_weights", "sop_classifier.classifier.weight"),
                   ("cls/seq_relationship/output_bias", "sop_classifier.classifier.bias"))
_TF_LEAF = {"kernel": ("weight", True), "bias": ("bias", False), "gamma": ("weight", False),
            "beta": ("bias", False)}


def tf_to_hf_name(name: str, albert: bool) -> Tuple[str, bool]:
    """A Flax/TF parameter name -> (HF state-dict key, transpose?). Raises HFCheckpointError if unknown."""
    for tf_name, hf_name in (_ALBERT_TENSORS if albert else _BERT_TENSORS):
        if name == tf_name:
            return hf_name, False
    module, _, leaf = name.rpartition("/")
    if leaf not in _TF_LEAF:
        raise HFCheckpointError(f"no Hugging Face name for parameter {name}")
    hf_leaf, transpose = _TF_LEAF[leaf]
    if albert:
        m = re.fullmatch(r"bert/encoder/transformer/group_(\d+)/inner_group_(\d+)/(.+)", module)
        if m:
            for tf_sub, hf_sub in _ALBERT_LAYER:
                if m.group(3) == tf_sub:
                    return (f"albert.encoder.albert_layer_groups.{m.group(1)}.albert_layers.{m.group(2)}."
                            f"{hf_sub}.{hf_leaf}"), transpose
        for tf_mod, hf_mod in _ALBERT_MODULES:
            if module == tf_mod:
                return f"{hf_mod}.{hf_leaf}", transpose
    else:
        m = re.fullmatch(r"bert/encoder/layer_(\d+)/(.+)", module)
        if m:
            return f"bert.encoder.layer.{m.group(1)}.{m.group(2).replace('/', '.')}.{hf_leaf}", transpose
        for tf_mod, hf_mod in _BERT_MODULES:
            if module == tf_mod:
                return f"{hf_mod}.{hf_leaf}", transpose
    raise HFCheckpointError(f"no Hugging Face name for parameter {name}")


def to_hf_state_dict(flat: Dict[str, Any], albert: bool) -> Dict[str, np.ndarray]:
    """{TF name: array} -> {HF key: float32 array}; the tied MLM decoder weight is left out, as
    transformers' save_pretrained does (it is the word embedding)."""
    out: Dict[str, np.ndarray] = {}
    for name, value in flat.items():
        key, transpose = tf_to_hf_name(name, albert)
        arr = np.asarray(value, dtype=np.float32)
        out[key] = np.ascontiguousarray(arr.T if transpose else arr)
    return out


# Older checkpoints and bare encoders name things differently; these spellings are accepted on import.
def _aliases(key: str) -> List[str]:
    out = [key]
    if key.endswith("LayerNorm.weight"):
        out.append(key[: -len("weight")] + "gamma")
    if key.endswith("LayerNorm.bias"):
        out.append(key[: -len("bias")] + "beta")
    if key == "cls.predictions.bias":
        out.append("cls.predictions.decoder.bias")
    if key == "predictions.bias":
        out.append("predictions.decoder.bias")
    for prefix in ("bert.", "albert."):
        if key.startswith(prefix):  # a bare BertModel/AlbertModel checkpoint has no prefix
            out += [k[len(prefix):] for k in list(out)]
    return out


def from_hf_state_dict(state: Dict[str, np.ndarray], names_and_shapes: Dict[str, Tuple[int, ...]],
                       albert: bool) -> Tuple[Dict[str, np.ndarray], List[str]]:
    """HF tensors -> {TF name: float32 array} for the model's parameter names; returns (found, unused keys).

    Names the folder lacks are simply absent from `found` (tf_checkpoint.load_into_params reports them)."""
    found: Dict[str, np.ndarray] = {}
    used = set()
    for name, shape in names_and_shapes.items():
        key, transpose = tf_to_hf_name(name, albert)
        for alias in _aliases(key):
            if alias in state:
                arr = np.asarray(state[alias], dtype=np.float32)
                found[name] = np.ascontiguousarray(arr.T) if transpose and arr.ndim == 2 else arr
                used.add(alias)
                break
    # Tied copies and buffers that carry no information of their own.
    ignorable = re.compile(r"(.*position_ids|.*decoder\.weight|.*decoder\.bias)$")
    unused = sorted(k for k in state if k not in used and not ignorable.fullmatch(k))
    return found, unused


# ---------------------------------------------------------------------------------------------------------
# config.json
# ---------------------------------------------------------------------------------------------------------

# bertbeam hidden_act -> HF: bertbeam's "gelu" is the tanh approximation (google-research/bert), which HF
# calls "gelu_new"; HF's "gelu" is the exact erf form, bertbeam's "gelu_exact".
_ACT_TO_HF = {"gelu": "gelu_new", "gelu_new": "gelu_new", "gelu_pytorch_tanh": "gelu_new", "gelu_exact": "gelu",
              "relu": "relu", "tanh": "tanh"}
_ACT_FROM_HF = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu", "gelu": "gelu_exact",
                "relu": "relu", "tanh": "tanh"}


def hf_config(cfg: ModelConfig, with_nsp: bool, special_ids: Optional[Dict[str, int]] = None) -> Dict[str, Any]:
    """config.json for transformers: model_type, architectures and the original fields."""
    if cfg.hidden_act not in _ACT_TO_HF:
        raise HFCheckpointError(f"hidden_act {cfg.hidden_act!r} has no transformers equivalent")
    albert = cfg.is_albert
    arch = ("Albert" if albert else "Bert") + ("ForPreTraining" if with_nsp else "ForMaskedLM")
    out: Dict[str, Any] = {
        "architectures": [arch], "model_type": "albert" if albert else "bert",
        "vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size, "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads, "intermediate_size": cfg.intermediate_size,
        "hidden_act": _ACT_TO_HF[cfg.hidden_act], "hidden_dropout_prob": cfg.hidden_dropout_prob,
        "attention_probs_dropout_prob": cfg.attention_probs_dropout_prob,
        "max_position_embeddings": cfg.max_position_embeddings, "type_vocab_size": cfg.type_vocab_size,
        "initializer_range": cfg.initializer_range, "layer_norm_eps": 1e-12,
        "position_embedding_type": "absolute", "tie_word_embeddings": True,
    }
    if albert:
        out.update(embedding_size=cfg.embed_dim, num_hidden_groups=cfg.num_hidden_groups,
                   inner_group_num=cfg.inner_group_num)
    ids = special_ids or {}
    # The vocabulary's own ids (the Norwegian vocabularies put [PAD]/[CLS]/[SEP] far from BERT's 0/101/102).
    for field, token in (("pad_token_id", ("[PAD]", "<pad>")), ("bos_token_id", ("[CLS]",)),
                         ("eos_token_id", ("[SEP]",))):
        for t in token:
            if t in ids:
                out[field] = int(ids[t])
                break
    if not albert:
        out.pop("bos_token_id", None)
        out.pop("eos_token_id", None)
    return out


def model_config_from_hf(data: Dict[str, Any]) -> ModelConfig:
    """A transformers BERT/ALBERT config.json -> ModelConfig (hidden_act translated, see _ACT_FROM_HF)."""
    from training.model_configs import from_dict  # pylint: disable=import-outside-toplevel
    kind = data.get("model_type")
    if kind not in ("bert", "albert"):
        raise HFCheckpointError(f"config.json: model_type {kind!r} is not bert or albert")
    act = data.get("hidden_act", "gelu")
    if act not in _ACT_FROM_HF:
        raise HFCheckpointError(f"config.json: hidden_act {act!r} is not supported")
    if data.get("position_embedding_type", "absolute") != "absolute":
        raise HFCheckpointError("config.json: only position_embedding_type 'absolute' is supported")
    eps = float(data.get("layer_norm_eps", 1e-12))
    if abs(eps - 1e-12) > 1e-15:
        raise HFCheckpointError(f"config.json: layer_norm_eps {eps} differs from the 1e-12 the models use")
    fields = dict(data, hidden_act=_ACT_FROM_HF[act])
    return from_dict(fields, kind)


def is_hf_config(data: Dict[str, Any]) -> bool:
    """True for a transformers config.json (as opposed to google-research's bert_config.json)."""
    return data.get("model_type") in ("bert", "albert") and ("architectures" in data or "transformers_version" in data)


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------

_ST_DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32,
              "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
    """All tensors of a .safetensors file as numpy (BF16 widened to float32)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise HFCheckpointError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", raw[:8])
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HFCheckpointError(f"{path}: not a safetensors file ({e})") from e
    base = 8 + n
    out: Dict[str, np.ndarray] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        start, end = info["data_offsets"]
        buf = raw[base + start: base + end]
        dtype, shape = info["dtype"], tuple(info["shape"])
        if dtype == "BF16":
            bits = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
            out[key] = bits.view(np.float32).reshape(shape)
        elif dtype in _ST_DTYPES:
            out[key] = np.frombuffer(buf, dtype=np.dtype(_ST_DTYPES[dtype]).newbyteorder("<")).reshape(shape)
        else:
            raise HFCheckpointError(f"{path}: tensor {key} has unsupported dtype {dtype}")
    return out


def write_safetensors(path: str, tensors: Dict[str, np.ndarray], metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes float32 tensors as safetensors (keys sorted, header padded to 8 bytes as the reference does)."""
    header: Dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    blobs = []
    for key in sorted(tensors):
        arr = np.ascontiguousarray(tensors[key], dtype="<f4")
        blob = arr.tobytes()
        header[key] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for blob in blobs:
            f.write(blob)
    os.replace(tmp, path)


# torch storage class name -> numpy dtype, for the restricted unpickler below.
_TORCH_STORAGES = {"FloatStorage": np.float32, "HalfStorage": np.float16, "DoubleStorage": np.float64,
                   "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
                   "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
                   "BFloat16Storage": "bfloat16"}
_TORCH_DTYPES = {"float32": np.float32, "float": np.float32, "float16": np.float16, "half": np.float16,
                 "float64": np.float64, "int64": np.int64, "long": np.int64, "int32": np.int32,
                 "bfloat16": "bfloat16", "uint8": np.uint8, "int8": np.int8, "bool": np.bool_}


class _StorageType:
    def __init__(self, dtype):
        self.dtype = dtype


def _storage_from_bytes(buf: bytes, dtype) -> np.ndarray:
    if dtype == "bfloat16":
        return (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(buf, dtype=np.dtype(dtype).newbyteorder("<"))


def _rebuild_tensor(storage, storage_offset, size, stride, *_args):
    """torch._utils._rebuild_tensor_v2 for numpy: a strided view of the storage, copied."""
    size, stride = tuple(size), tuple(stride)
    if not size:
        return np.array(storage[storage_offset])
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=size,
                                           strides=tuple(s * item for s in stride))
    return np.array(view)


class _TorchUnpickler(pickle.Unpickler):
    """Rebuilds the tensors of a torch zip checkpoint and refuses any other global (no code runs)."""

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: str):
        super().__init__(file)
        self._archive, self._prefix, self._path = archive, prefix, path
        self._cache: Dict[str, np.ndarray] = {}

    def find_class(self, module, name):
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _TORCH_STORAGES:
            return _StorageType(_TORCH_STORAGES[name])
        if module == "collections" and name == "OrderedDict":
            import collections  # pylint: disable=import-outside-toplevel
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, requires_grad, backward_hooks, *a: data
        if module == "torch" and name in _TORCH_DTYPES:
            return name
        raise HFCheckpointError(f"{self._path}: pickled object {module}.{name} is not a tensor; refusing to load "
                                "it without torch (convert the folder to model.safetensors with transformers)")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid[:5]
        if kind != "storage":
            raise HFCheckpointError(f"{self._path}: unknown persistent id {kind!r}")
        dtype = storage_type.dtype if isinstance(storage_type, _StorageType) else _TORCH_DTYPES.get(storage_type)
        if dtype is None:
            raise HFCheckpointError(f"{self._path}: unsupported storage {storage_type!r}")
        if key not in self._cache:
            self._cache[key] = _storage_from_bytes(self._archive.read(f"{self._prefix}data/{key}"), dtype)
        return self._cache[key]


def read_torch_bin(path: str) -> Dict[str, np.ndarray]:
    """The tensors of a torch.save zip file (pytorch_model.bin) as numpy, without torch."""
    if not zipfile.is_zipfile(path):
        raise HFCheckpointError(f"{path}: a legacy (pre-1.6, non-zip) torch file; reading it needs torch "
                                "(`pip install torch`, then save it again with transformers' save_pretrained)")
    with zipfile.ZipFile(path) as archive:
        pkl = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pkl) != 1:
            raise HFCheckpointError(f"{path}: no single data.pkl in the torch zip file")
        prefix = pkl[0][: -len("data.pkl")]
        import io  # pylint: disable=import-outside-toplevel
        state = _TorchUnpickler(io.BytesIO(archive.read(pkl[0])), archive, prefix, path).load()
    if not isinstance(state, dict):
        raise HFCheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {str(k): np.asarray(v) for k, v in state.items()}


def _local(path: str) -> str:
    if "://" in path:
        raise HFCheckpointError(f"{path}: Hugging Face folders are read from local disk; copy it first "
                                "(e.g. `gcloud storage cp -r` or `huggingface-cli download --local-dir`)")
    return os.path.abspath(os.path.expanduser(path))


def is_hf_folder(path: str) -> bool:
    """A local folder with a transformers config.json and weights (safetensors or pytorch_model.bin)."""
    if "://" in path or not os.path.isdir(path):
        return False
    names = set(os.listdir(path))
    return CONFIG_NAME in names and bool(names & {SAFETENSORS_NAME, SAFETENSORS_INDEX, TORCH_BIN_NAME,
                                                  TORCH_BIN_INDEX})


def read_hf_config(folder: str) -> Dict[str, Any]:
    folder = _local(folder)
    path = os.path.join(folder, CONFIG_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise HFCheckpointError(f"{path}: cannot read ({e})") from e


def read_hf_weights(folder: str) -> Tuple[Dict[str, np.ndarray], str]:
    """(state dict, file it came from): safetensors first (single or sharded), else pytorch_model.bin."""
    folder = _local(folder)
    for index_name, reader in ((SAFETENSORS_INDEX, read_safetensors), (TORCH_BIN_INDEX, read_torch_bin)):
        index = os.path.join(folder, index_name)
        if os.path.exists(index):
            with open(index, encoding="utf-8") as f:
                files = sorted(set(json.load(f)["weight_map"].values()))
            state: Dict[str, np.ndarray] = {}
            for name in files:
                state.update(reader(os.path.join(folder, name)))
            return state, index
    for name, reader in ((SAFETENSORS_NAME, read_safetensors), (TORCH_BIN_NAME, read_torch_bin)):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return reader(path), path
    raise HFCheckpointError(f"{folder}: no {SAFETENSORS_NAME} or {TORCH_BIN_NAME}")


def read_hf_folder(folder: str, names_and_shapes: Dict[str, Tuple[int, ...]], albert: bool
                   ) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """The folder's weights under the model's TF names, checked against its config.json's model_type.

    Returns (found tensors, report with `file`, `config` and `unused` HF keys)."""
    config = read_hf_config(folder)
    kind = config.get("model_type")
    if kind not in ("bert", "albert"):
        raise HFCheckpointError(f"{folder}/config.json: model_type {kind!r}; only bert and albert load")
    if (kind == "albert") != albert:
        raise HFCheckpointError(f"{folder}: a {kind} model, but the run's model config is "
                                f"{'albert' if albert else 'bert'} (give the matching --bert_config_file/"
                                f"--albert_config_file, e.g. {folder}/config.json)")
    state, source = read_hf_weights(folder)
    found, unused = from_hf_state_dict(state, names_and_shapes, albert)
    return found, {"file": source, "config": config, "unused": unused}


def load_into(params: Dict[str, Any], folder: str, load_heads: bool, albert: bool) -> Tuple[Dict[str, Any], str]:
    """--init_checkpoint HF_FOLDER: the folder's weights copied into `params` (same rules as a TF checkpoint:
    encoder complete, heads as --load_mlm_nsp_weights says); returns (params, description)."""
    from training import tf_checkpoint  # pylint: disable=import-outside-toplevel
    shapes = {n: tuple(np.shape(v)) for n, v in tf_checkpoint.flatten(params).items()}
    found, report = read_hf_folder(folder, shapes, albert)
    params, loaded = tf_checkpoint.load_into_params(params, found, load_heads, report["file"])
    if report["unused"]:
        import logging  # pylint: disable=import-outside-toplevel
        logging.info("%s: %d tensors not used by this model (e.g. %s)", report["file"], len(report["unused"]),
                     report["unused"][:3])
    return params, f"Hugging Face folder {folder} ({len(loaded['loaded'])} tensors from {report['file']})"
