"""The dataset manifest: what was built, from what, with which settings, and every count reconciled."""
import json
from typing import Any, Dict, List, Optional

from transforms import fileio

FORMAT = "bertbeam.pretraining.v1"
# Warn (stderr and reconciliation.problems) when more than this share of the tokens read never reached
# an instance: usually sentences far longer than the sequence, or the wrong vocabulary.
MAX_LOST_SHARE = 0.25


def _per_copy(n: int, dupe_factor: int):
    """A count over all dupe copies as the mean per copy: an int when exact."""
    return n // dupe_factor if n % dupe_factor == 0 else round(n / dupe_factor, 2)


def _by_reason(counts: Dict[str, int], prefix: str) -> Dict[str, int]:
    """{reason: n} for the flat counters named "<prefix>.<reason>" (zeros left out)."""
    head = prefix + "."
    return {k[len(head):]: v for k, v in sorted(counts.items()) if k.startswith(head) and v}


def _damaged_files(counts: Dict[str, int]) -> Dict[str, str]:
    """{file key: reason} from the "files_damaged.<reason>:<file key>" counters."""
    out = {}
    for k, v in sorted(counts.items()):
        if k.startswith("files_damaged.") and v:
            reason, key = k[len("files_damaged."):].split(":", 1)
            out[key] = reason
    return out


def make_manifest(base: Dict[str, Any], counts: Dict[str, int], shards: List[Dict[str, Any]],
                  seconds: float) -> Dict[str, Any]:
    """Combines the settings (base) with counts computed from the data and the written shards."""
    shards = sorted(shards, key=lambda s: s["shard"])
    num_instances = sum(s["num_instances"] for s in shards)
    documents = {"read": counts.get("documents_read", 0), "used": counts.get("documents_used", 0),
                 "dropped": _by_reason(counts, "documents_dropped")}
    lines_dropped = _by_reason(counts, "lines_dropped")
    if "sentences_read" in counts:
        sentences_read = counts["sentences_read"]
    else:  # without the tokenizer-side counter: a sentence a line, less the lines of documents dropped while reading
        sentences_read = counts.get("lines_read", 0) - sum(lines_dropped.values())
    sentences_dropped = _by_reason(counts, "sentences_dropped")
    sentences = {"read": sentences_read, "used": counts.get("sentences_used", 0),
                 "empty_after_tokenization": counts.get("sentences_empty_after_tokenization", 0),
                 "dropped": sentences_dropped,
                 "in_dropped_documents": sentences_read - counts.get("sentences_used", 0)
                 - counts.get("sentences_empty_after_tokenization", 0),
                 "split": counts.get("sentences_split", 0), "pieces_added": counts.get("sentence_pieces_added", 0)}
    tokens_dropped = _by_reason(counts, "tokens_dropped")
    if counts.get("tokens_dropped_all_unknown") and "all_unknown" not in tokens_dropped:
        tokens_dropped["all_unknown"] = counts["tokens_dropped_all_unknown"]
    tokens = {"read": counts.get("tokens_read", counts.get("tokens_used", 0) + sum(tokens_dropped.values())),
              "used": counts.get("tokens_used", 0), "unknown": counts.get("unknown_tokens_used", 0),
              "dropped": tokens_dropped, "in_instances": counts.get("instance_tokens", 0),
              "masked": counts.get("masked_positions", 0)}
    if "token_copies_offered" in counts:
        # "used" = tokens that reached an instance (mean over the dupe copies); "lost" says why the rest
        # of the used documents' tokens did not; "copies" holds the exact integer balance over copies.
        dupe = max(1, int(base.get("dupe_factor", 1) or 1))
        in_instances = counts.get("token_copies_in_instances", 0)
        lost_copies = _by_reason(counts, "token_copies_lost")
        tokens["in_used_documents"] = counts.get("tokens_used", 0)
        tokens["used"] = _per_copy(in_instances, dupe)
        tokens["lost"] = {k: _per_copy(v, dupe) for k, v in lost_copies.items()}
        tokens["reached_instance_share"] = round(in_instances / (dupe * tokens["read"]), 6) if tokens["read"] else 0.0
        tokens["copies"] = {"dupe_factor": dupe, "offered": counts["token_copies_offered"],
                            "in_instances": in_instances, "lost": lost_copies,
                            "borrowed_from_other_documents": counts.get("token_copies_borrowed", 0)}
    manifest = dict(base)
    manifest.update({
        "format": FORMAT,
        "counts": {"train": {"num_documents": documents["used"], "num_instances": num_instances}},
        "time_taken_min": round(seconds / 60.0, 3),
        "shards": [{"path": s["path"], "num_instances": s["num_instances"], "bytes": s["bytes"]} for s in shards],
        "documents": documents,
        "sentences": sentences,
        "tokens": tokens,
        "input": {"files": counts.get("files_read", 0), "ranges": counts.get("ranges_read", 0),
                  "empty_files": counts.get("files_empty", 0), "lines_read": counts.get("lines_read", 0),
                  "lines_dropped": lines_dropped, "lines_too_long": counts.get("lines_too_long", 0),
                  "lines_invalid_utf8": counts.get("lines_invalid_utf8", 0),
                  # of them, lines of documents the reader dropped (a damaged gzip's, ...): never used
                  "lines_invalid_utf8_dropped": counts.get("lines_invalid_utf8_dropped", 0),
                  "bom_removed": counts.get("bom_removed", 0), "damaged_files": _damaged_files(counts)},
        "pairing_stats": {"random_next_unavailable": counts.get("random_next_unavailable", 0),
                          "chunks_dropped_no_pair": counts.get("chunks_dropped_no_pair", 0),
                          "mlm_chunks_cut": counts.get("chunk_cuts", 0)},
        "raw_counts": dict(sorted(counts.items())),
    })
    if num_instances != counts.get("instances", 0):
        raise RuntimeError(f"shards hold {num_instances} instances but {counts.get('instances', 0)} were built")
    problems = reconcile_problems(manifest)
    manifest["reconciliation"] = {"ok": not problems, "problems": problems,
                                  "checked": _checked(manifest)}
    return manifest


def read_manifest(path_or_dir: str) -> Dict[str, Any]:
    """Reads DIR/manifest.json (or a manifest path); local or gs://."""
    path = path_or_dir if path_or_dir.endswith(".json") else fileio.join(path_or_dir, "manifest.json")
    with fileio.open_read(path) as f:
        return json.loads(f.read().decode("utf-8"))


def _checked(manifest: Dict[str, Any]) -> List[str]:
    """Which balances the counters allow: sentences and tokens need the tokenizer-side read counters."""
    raw = manifest.get("raw_counts", {})
    checked = ["documents", "instances"]
    if "sentences_read" in raw:
        checked.append("sentences")
        if manifest.get("input_format", "bert") == "bert":
            checked.append("lines")
    if "tokens_read" in raw:
        checked.append("tokens")
    return checked


def reconcile_problems(manifest: Dict[str, Any]) -> List[str]:
    """Every balance that does not hold: read = used + dropped (by reason) for documents, sentences,
    tokens and (a sentence a line) input lines; instances in the shards = instances counted."""
    problems = []
    checked = _checked(manifest)
    docs = manifest["documents"]
    dropped = sum(docs["dropped"].values())
    if docs["read"] != docs["used"] + dropped:
        problems.append(f"documents read {docs['read']} != used {docs['used']} + dropped {dropped} "
                        f"{docs['dropped']}")
    shard_total = sum(s["num_instances"] for s in manifest.get("shards", []))
    if shard_total != manifest["counts"]["train"]["num_instances"]:
        problems.append(f"shards hold {shard_total} instances, counts say "
                        f"{manifest['counts']['train']['num_instances']}")
    sent = manifest["sentences"]
    if "sentences" in checked:
        accounted = sent["used"] + sent["empty_after_tokenization"] + sum(sent.get("dropped", {}).values())
        if sent["read"] != accounted:
            problems.append(f"sentences read {sent['read']} != used {sent['used']} + empty after tokenization "
                            f"{sent['empty_after_tokenization']} + dropped {sent.get('dropped')}")
    if "lines" in checked:
        inp = manifest["input"]
        lines_dropped = sum(inp["lines_dropped"].values())
        if inp["lines_read"] != sent["read"] + lines_dropped:
            problems.append(f"input lines {inp['lines_read']} != sentences read {sent['read']} + lines of "
                            f"documents dropped while reading {inp['lines_dropped']}")
    tok = manifest["tokens"]
    if "tokens" in checked:
        tok_dropped = sum(tok.get("dropped", {}).values())
        in_docs = tok.get("in_used_documents", tok["used"])
        if tok["read"] != in_docs + tok_dropped:
            problems.append(f"tokens read {tok['read']} != in used documents {in_docs} + dropped {tok.get('dropped')}")
        copies = tok.get("copies")
        if copies:
            lost = sum(copies["lost"].values())
            if copies["offered"] != copies["in_instances"] + lost:
                problems.append(f"token copies offered {copies['offered']} != in instances {copies['in_instances']} "
                                f"+ lost {copies['lost']}")
            if copies["offered"] != in_docs * copies["dupe_factor"]:
                problems.append(f"token copies offered {copies['offered']} != tokens in used documents {in_docs} "
                                f"x dupe_factor {copies['dupe_factor']}")
    warning = loss_warning(manifest)
    if warning:
        problems.append(warning)
    return problems


def _loss_reasons(tok: Dict[str, Any]) -> Dict[str, Any]:
    """Why tokens read did not reach an instance: dropped with their document, or lost per copy."""
    return dict(tok.get("dropped", {}), **tok.get("lost", {}))


def loss_warning(manifest: Dict[str, Any]) -> Optional[str]:
    """A loud message when more than MAX_LOST_SHARE of the tokens read never reached an instance."""
    tok = manifest.get("tokens", {})
    share = tok.get("reached_instance_share")
    if share is None or not tok.get("read") or share >= 1.0 - MAX_LOST_SHARE:
        return None
    why = _loss_reasons(tok)
    return (f"only {share:.1%} of the {tok['read']} tokens read reached an instance (more than "
            f"{MAX_LOST_SHARE:.0%} lost; by reason, per copy: {why}); with sentences much longer than "
            f"--max_seq_length use --input_format text/jsonl (long sentences are split) or --pairing none")


def token_share_line(manifest: Dict[str, Any]) -> str:
    """One line for the build summary: tokens read, how many reached an instance, and why others did not."""
    tok = manifest.get("tokens", {})
    if "reached_instance_share" not in tok:
        return f"tokens {tok.get('used', 0)}"
    why = ", ".join(f"{k} {v}" for k, v in _loss_reasons(tok).items()) or "none"
    if manifest.get("pairing") == "none":
        how = f"chunks cut and carried on: {manifest.get('pairing_stats', {}).get('mlm_chunks_cut', 0)}"
    else:
        how = f"long sentences split: {manifest.get('sentences', {}).get('split', 0)}"
    return (f"tokens read {tok['read']}, reached an instance {tok['used']} ({tok['reached_instance_share']:.2%}; "
            f"lost per copy: {why}; {how})")


def reconcile(manifest: Dict[str, Any]) -> Optional[str]:
    """None when every count balances (see reconcile_problems); else a description of the gaps."""
    problems = reconcile_problems(manifest)
    return "; ".join(problems) if problems else None
