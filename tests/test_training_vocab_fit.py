"""From scratch, the model takes the dataset's vocabulary size; from a checkpoint or config file, never."""
import dataclasses

from training import config as config_lib
from training import model_configs
from training.train import _fit_vocab_from_scratch


def _cfg(**kw):
    fields = {f.name for f in dataclasses.fields(config_lib.TrainConfig)}
    return config_lib.TrainConfig(**{k: v for k, v in kw.items() if k in fields})


def test_from_scratch_takes_dataset_vocab_size():
    base = model_configs.get_model_class("bert_tiny").model
    manifest = {"vocab": {"size": 4374}}
    fitted = _fit_vocab_from_scratch(_cfg(init_weights=True), base, manifest)
    assert fitted.vocab_size == 4374 and fitted.hidden_size == base.hidden_size
    # Continuing a checkpoint keeps the model's own size (a mismatch must then be an error, not a resize).
    kept = _fit_vocab_from_scratch(_cfg(init_weights=False, init_checkpoint="x/bert_model.ckpt"), base, manifest)
    assert kept.vocab_size == base.vocab_size
