"""The dataset manifest: what was built, from what, with which settings, and every count reconciled."""
import json
from typing import Any, Dict, List, Optional

from transforms import fileio

FORMAT = "bertbeam.pretraining.v1"


def make_manifest(base: Dict[str, Any], counts: Dict[str, int], shards: List[Dict[str, Any]],
                  seconds: float) -> Dict[str, Any]:
    """Combines the settings (base) with counts computed from the data and the written shards."""
    shards = sorted(shards, key=lambda s: s["shard"])
    num_instances = sum(s["num_instances"] for s in shards)
    dropped = {k.split(".", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("documents_dropped.")}
    documents = {"read": counts.get("documents_read", 0), "used": counts.get("documents_used", 0),
                 "dropped": dropped}
    manifest = dict(base)
    manifest.update({
        "format": FORMAT,
        "counts": {"train": {"num_documents": documents["used"], "num_instances": num_instances}},
        "time_taken_min": round(seconds / 60.0, 3),
        "shards": [{"path": s["path"], "num_instances": s["num_instances"], "bytes": s["bytes"]} for s in shards],
        "documents": documents,
        "sentences": {"read": counts.get("lines_read", 0), "used": counts.get("sentences_used", 0),
                      "empty_after_tokenization": counts.get("sentences_empty_after_tokenization", 0),
                      "in_dropped_documents": counts.get("lines_read", 0) - counts.get("sentences_used", 0)
                      - counts.get("sentences_empty_after_tokenization", 0)},
        "tokens": {"used": counts.get("tokens_used", 0), "unknown": counts.get("unknown_tokens_used", 0),
                   "in_instances": counts.get("instance_tokens", 0),
                   "masked": counts.get("masked_positions", 0)},
        "input": {"lines_invalid_utf8": counts.get("lines_invalid_utf8", 0),
                  "bom_removed": counts.get("bom_removed", 0), "ranges": counts.get("ranges_read", 0)},
        "pairing_stats": {"random_next_unavailable": counts.get("random_next_unavailable", 0),
                          "chunks_dropped_no_pair": counts.get("chunks_dropped_no_pair", 0)},
        "raw_counts": dict(sorted(counts.items())),
    })
    if num_instances != counts.get("instances", 0):
        raise RuntimeError(f"shards hold {num_instances} instances but {counts.get('instances', 0)} were built")
    return manifest


def read_manifest(path_or_dir: str) -> Dict[str, Any]:
    """Reads DIR/manifest.json (or a manifest path); local or gs://."""
    path = path_or_dir if path_or_dir.endswith(".json") else fileio.join(path_or_dir, "manifest.json")
    with fileio.open_read(path) as f:
        return json.loads(f.read().decode("utf-8"))


def reconcile(manifest: Dict[str, Any]) -> Optional[str]:
    """None when documents read = used + dropped (by reason); else a description of the gap."""
    docs = manifest["documents"]
    dropped = sum(docs["dropped"].values())
    if docs["read"] != docs["used"] + dropped:
        return f"documents read {docs['read']} != used {docs['used']} + dropped {dropped}"
    return None
