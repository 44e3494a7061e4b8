"""`bertbeam export`: a bertbeam run's weights -> Google TF1 checkpoint (bert_model.ckpt + bert_config.json), or
with --format hf a Hugging Face folder (training/hf_export.py)."""
import json
import sys
from typing import Optional, Sequence


def export(checkpoint: str, output_dir: str, name: str = "bert_model.ckpt") -> str:
    """Writes OUTPUT_DIR/NAME.{index,data-*}, `checkpoint` and the run's bert/albert_config.json; returns the prefix."""
    from training import checkpoints, tf_checkpoint  # pylint: disable=import-outside-toplevel
    from training.input_pipeline import tf_module  # pylint: disable=import-outside-toplevel
    tf = tf_module()
    params, _, meta = checkpoints.restore_init(checkpoint, with_opt_state=False)
    prefix = output_dir.rstrip("/") + "/" + name
    tf_checkpoint.write_tf_checkpoint(params, prefix, global_step=int(meta.get("step", 0)))
    run_dir = _run_dir_of(checkpoint)
    for config_name in ("bert_config.json", "albert_config.json"):
        src = run_dir.rstrip("/") + "/" + config_name
        if tf.io.gfile.exists(src):
            with tf.io.gfile.GFile(src, "r") as f:
                data = json.loads(f.read())
            data.pop("model_type", None)  # bertbeam's marker; not a field of the original configs
            if config_name == "bert_config.json" and tf.io.gfile.exists(run_dir.rstrip("/") + "/albert_config.json"):
                continue
            with tf.io.gfile.GFile(output_dir.rstrip("/") + "/" + config_name, "w") as f:
                f.write(json.dumps(data, indent=2))
    return prefix


def _run_dir_of(checkpoint: str) -> str:
    from training import checkpoints  # pylint: disable=import-outside-toplevel
    directory, _ = checkpoints.resolve_orbax(checkpoint)
    directory = directory.rstrip("/")
    if directory.endswith("/" + checkpoints.CHECKPOINT_SUBDIR) or directory == checkpoints.CHECKPOINT_SUBDIR:
        return directory[: -len(checkpoints.CHECKPOINT_SUBDIR)].rstrip("/") or "."
    return directory


def main(argv: Optional[Sequence[str]] = None) -> int:
    from pipeline.flags import ArgumentParser, add_bool  # pylint: disable=import-outside-toplevel  (no Beam)
    parser = ArgumentParser(prog="bertbeam export", description=__doc__)
    parser.add_argument("--checkpoint", required=True,
                        help="a run folder (OUTPUT_DIR/RUN_PREFIX: latest step), its checkpoints/ or checkpoints/STEP"
                             " (hf: also a TF1 bert_model.ckpt)")
    parser.add_argument("--output_dir", required=True,
                        help="tf1: folder for bert_model.ckpt.* (local or gs://); hf: a local folder")
    parser.add_argument("--name", default="bert_model.ckpt", help="checkpoint prefix name")
    parser.add_argument("--format", default="tf1", choices=("tf1", "hf"),
                        help="tf1: Google's bert_model.ckpt (default); hf: a transformers folder (config.json, "
                             "model.safetensors, tokenizer files)")
    parser.add_argument("--vocab_file", default=None,
                        help="hf: vocab.txt or SentencePiece .model (default: the run's dataset manifest's)")
    add_bool(parser, "do_lower_case", None, "hf: tokenizer casing (default: the dataset manifest's, else the vocab's "
             "vocab_config.json)")
    add_bool(parser, "strip_accents", None, "hf: default as --do_lower_case")
    parser.add_argument("--pretrain_data", default=None,
                        help="hf: dataset folder whose manifest names the vocabulary (default: the run's)")
    parser.add_argument("--bert_config_file", default=None, help="model config (default: the run's)")
    parser.add_argument("--albert_config_file", default=None, help="ALBERT model config (default: the run's)")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.format == "hf":
        from training import hf_export  # pylint: disable=import-outside-toplevel
        try:
            out = hf_export.export_hf(args.checkpoint, args.output_dir, args.vocab_file, args.do_lower_case,
                                      args.strip_accents, args.pretrain_data, args.bert_config_file,
                                      args.albert_config_file)
        except ValueError as e:
            print(f"bertbeam export: error: {e}", file=sys.stderr)
            return 2
        tok = out["tokenizer"]
        print(f"bertbeam export: wrote {out['output_dir']} ({out['architecture']}, step {out['step']}, "
              f"{out['num_tensors']} tensors; {tok['kind']} tokenizer from {out['vocab']}, "
              f"do_lower_case={tok['do_lower_case']})")
        return 0
    prefix = export(args.checkpoint, args.output_dir, args.name)
    print(f"bertbeam export: wrote {prefix}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
