"""`--input_format text|jsonl` end to end on real running text: valid instances, ids visible in inspect."""
import json
import subprocess
import sys

from pipeline import build
from transforms.example_codec import decode_example
from transforms.tfrecord_io import read_records_from_path


def _paragraphs(shared_dir, limit=120):
    lines = (shared_dir / "data/ud/no_bokmaal/raw_texts_2016/train.txt").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip()][:limit]


def _check_records(out, vocab_tokens):
    cls_id, sep_id = vocab_tokens.index("[CLS]"), vocab_tokens.index("[SEP]")
    n = 0
    for shard in sorted(out.glob("train-*")):
        for record in read_records_from_path(str(shard)):
            f = decode_example(record)
            length = int(f["input_mask"].sum())
            assert f["input_ids"][0] == cls_id and f["input_ids"][length - 1] == sep_id
            assert int((f["input_ids"][:length] == sep_id).sum()) == 2
            n += 1
    return n


def test_text_format_segments_paragraphs_into_instances(shared_dir, tmp_path):
    paras = _paragraphs(shared_dir)
    # Five paragraphs a document, blank line between documents.
    docs = ["\n".join(paras[i:i + 5]) for i in range(0, len(paras), 5)]
    corpus = tmp_path / "nb.txt"
    corpus.write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    vocab = shared_dir / "data/vocab/norwegian_cased_50k/vocab.txt"
    out = tmp_path / "out"
    manifest = build.run([f"--input_file={corpus}", "--input_format=text", "--lang=nb", f"--vocab_file={vocab}",
                          f"--output_dir={out}", "--dupe_factor=2", "--max_seq_length=64",
                          "--max_predictions_per_seq=10"])
    assert manifest["documents"]["read"] == len(docs)
    # Segmentation made more sentences than paragraphs.
    assert manifest["sentences"]["used"] > len(paras)
    assert _check_records(out, vocab.read_text(encoding="utf-8").splitlines()) == \
        manifest["counts"]["train"]["num_instances"] > 0


def test_jsonl_ids_reach_records_and_inspect(shared_dir, tmp_path):
    paras = _paragraphs(shared_dir, 60)
    corpus = tmp_path / "docs.jsonl"
    with open(corpus, "w", encoding="utf-8") as f:
        for i in range(0, len(paras), 4):
            f.write(json.dumps({"id": f"nb-{i // 4:03d}", "text": "\n".join(paras[i:i + 4])}) + "\n")
        f.write("not json\n")
    vocab = shared_dir / "data/vocab/norwegian_cased_50k/vocab.txt"
    out = tmp_path / "out"
    manifest = build.run([f"--input_file={corpus}", "--input_format=jsonl", "--id_field=id", "--lang=nb",
                          f"--vocab_file={vocab}", f"--output_dir={out}", "--dupe_factor=1",
                          "--max_seq_length=64", "--max_predictions_per_seq=10"])
    assert manifest["documents"]["dropped"] == {"bad_jsonl": 1}
    assert manifest["features"]["document_id"]["dtype"] == "bytes"
    ids = {decode_example(r)["document_id"][0].decode() for s in out.glob("train-*")
           for r in read_records_from_path(str(s))}
    assert ids and all(i.startswith("nb-") for i in ids)
    proc = subprocess.run([sys.executable, "-m", "pipeline.main", "inspect", str(out), "--num_instances=2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "document_id: nb-" in proc.stdout
