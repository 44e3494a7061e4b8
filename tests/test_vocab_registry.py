"""Model-class registry: defaults per class, explicit flags win."""
import pytest

from vocab.registry import MODEL_CLASSES, apply_model_class_defaults, get_model_class

CONFIG_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
                 "type_vocab_size", "initializer_range")


def test_all_seed_classes_registered_with_full_configs():
    assert set(MODEL_CLASSES) >= {"bert_multi_cased", "bert_base_norwegian_cased", "bert_base_norwegian_uncased",
                                  "bert_base_scandinavian_uncased", "bert_large_norwegian_uncased", "albert_base_v2"}
    for mc in MODEL_CLASSES.values():
        assert all(f in mc.config for f in CONFIG_FIELDS), mc.name
        assert mc.model_type in ("bert", "albert") and mc.vocab_file


def test_mbert_defaults():
    mc = get_model_class("bert_multi_cased")
    assert mc.config["vocab_size"] == 119547 and mc.config["hidden_size"] == 768
    assert (mc.do_lower_case, mc.strip_accents, mc.do_whole_word_mask) == (False, False, True)
    assert mc.vocab_kind == "wordpiece"


def test_norwegian_and_albert_classes():
    assert get_model_class("bert_base_norwegian_uncased").strip_accents is False  # "på" stays "på"
    large = get_model_class("bert_large_norwegian_uncased").config
    assert (large["hidden_size"], large["num_hidden_layers"], large["num_attention_heads"]) == (1024, 24, 16)
    albert = get_model_class("albert_base_v2")
    assert albert.model_type == "albert" and albert.vocab_kind == "sentencepiece"
    assert albert.config["embedding_size"] == 128 and albert.config["vocab_size"] == 30000
    assert albert.vocab_file.endswith(".model")


def test_explicit_flags_win_and_none_means_unset():
    out = apply_model_class_defaults("bert_base_norwegian_uncased",
                                     {"do_lower_case": None, "vocab_file": "/my/vocab.txt", "do_whole_word_mask": False})
    assert out["vocab_file"] == "/my/vocab.txt" and out["do_whole_word_mask"] is False
    assert out["do_lower_case"] is True and out["strip_accents"] is False
    assert out["bert_config"]["vocab_size"] == 50000 and out["model_class"] == "bert_base_norwegian_uncased"
    out["bert_config"]["vocab_size"] = 1  # callers get a copy
    assert get_model_class("bert_base_norwegian_uncased").config["vocab_size"] == 50000
    assert apply_model_class_defaults(None, {"do_lower_case": True, "x": None}) == {"do_lower_case": True}


def test_unknown_class_lists_known_names():
    with pytest.raises(ValueError, match="unknown --model_class 'bert_tiny'.*bert_multi_cased"):
        get_model_class("bert_tiny")
