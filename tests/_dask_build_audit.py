"""Dask worker preload for tests/test_runners.py: logs every instance-building call (bucket, length, pid).

Each call appends "<first document key>\t<max_seq_length>\t<pid>" to $BERTBEAM_TEST_AUDIT_FILE, so a test
can count how often the build stage ran per bucket and plan across all worker processes, and find a
worker process that is building.
"""
import os

from transforms import bucket_builder

# Dask may run a preload more than once in a process: wrap the original function once only.
_original = getattr(bucket_builder, "_unaudited_build_tokenized_bucket", bucket_builder.build_tokenized_bucket)
bucket_builder._unaudited_build_tokenized_bucket = _original  # pylint: disable=protected-access


def _audited(docs_tokens, cfg, *args, **kwargs):
    path = os.environ.get("BERTBEAM_TEST_AUDIT_FILE")
    if path and docs_tokens:
        line = f"{docs_tokens[0][0].key}\t{cfg.max_seq_length}\t{os.getpid()}\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode("utf-8"))
        finally:
            os.close(fd)
    return _original(docs_tokens, cfg, *args, **kwargs)


bucket_builder.build_tokenized_bucket = _audited
