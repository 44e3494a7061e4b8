"""File access for local and remote (gs://) paths through Beam's FileSystems, with atomic writes."""
import io
import os
import uuid
from typing import BinaryIO, List

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems


def is_remote(path: str) -> bool:
    return "://" in path


REMOTE_EXTRA_HINT = "pip install 'bertbeam[dataflow]' (Beam's Google Cloud libraries, apache-beam[gcp])"


def remote_support_problem(path: str) -> str:
    """Why this process cannot read or write `path` ("" when it can): a gs:// path needs Beam's Google Cloud
    libraries, which a local install leaves out (they cost every build process ~0.3 CPU-s of imports)."""
    if not is_remote(path):
        return ""
    try:
        FileSystems.get_filesystem(path)
    except ValueError:
        return f"{path.split('://', 1)[0]}:// paths need a file system this install lacks: {REMOTE_EXTRA_HINT}"
    return ""


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


def open_read(path: str) -> BinaryIO:
    """A seekable binary reader, never decompressing by file extension."""
    if not is_remote(path):
        return io.open(path, "rb")
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def list_dir(path: str) -> List[str]:
    """Paths of the files directly or indirectly under a folder (empty when it does not exist)."""
    if not is_remote(path):
        if not os.path.isdir(path):
            return []
        return sorted(os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
    pattern = path.rstrip("/") + "/**"
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def makedirs(path: str) -> None:
    if not is_remote(path):
        os.makedirs(path, exist_ok=True)


TEMP_PREFIX = ".tmp-"


def temp_path_for(path: str) -> str:
    """A unique temporary sibling of `path`, named `.tmp-<32 hex>-<name>`: hidden, so a `train-*` glob (or
    a reader listing shards) never picks up a half-written file left by a failed attempt."""
    head, sep, name = path.rpartition("/")
    return f"{head}{sep}{TEMP_PREFIX}{uuid.uuid4().hex}-{name}"


def is_temp_name(name: str) -> bool:
    """Whether a file name (no folder) is one of temp_path_for's temporary names."""
    import re  # pylint: disable=import-outside-toplevel
    return bool(re.fullmatch(r"\.tmp-[0-9a-f]{32}-.+", name, flags=re.DOTALL))


def write_atomic(path: str, data: bytes) -> None:
    """Writes a whole file so a reader sees either nothing or all of it (temp file, then rename)."""
    tmp = temp_path_for(path)
    if not is_remote(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with io.open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
    FileSystems.rename([tmp], [path])


def create_temp_for(path: str):
    """Opens a temporary sibling of `path` for streaming writes; returns (stream, temp path)."""
    tmp = temp_path_for(path)
    if not is_remote(path):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        return io.open(tmp, "wb"), tmp
    return FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED), tmp


def commit_temp(tmp: str, path: str) -> None:
    if not is_remote(path):
        os.replace(tmp, path)
    else:
        FileSystems.rename([tmp], [path])


def delete(paths: List[str]) -> None:
    if paths:
        FileSystems.delete(list(paths))


def delete_tree(path: str) -> None:
    """Deletes a folder and everything under it, if it exists."""
    if not is_remote(path):
        import shutil  # pylint: disable=import-outside-toplevel
        shutil.rmtree(path, ignore_errors=True)
        return
    files = list_dir(path)
    if files:
        FileSystems.delete(files)


def delete_stray_temps(folder: str) -> int:
    """Deletes temporary files (temp_path_for names) that failed attempts left in a folder, in one listing and
    one batched delete; returns how many. Call only once every writer into the folder has finished."""
    stray = [p for p in list_dir(folder) if is_temp_name(p.rsplit("/", 1)[-1])]
    delete(stray)
    return len(stray)
