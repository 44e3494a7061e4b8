"""TFRecord framing (length + masked CRC32C) for writing and reading, without TensorFlow."""
import gzip
import io
import struct
from typing import BinaryIO, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import google_crc32c
import numpy as np

_MASK_DELTA = 0xA282EAD8
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC32C of `data`."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """One TFRecord: uint64 length, masked crc of the length, data, masked crc of the data."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


def frame_parts(records: Sequence[bytes]) -> List[bytes]:
    """frame_record of each record as three parts (length and its CRC, data, data CRC), in one list, as a
    vectored write (os.writev) or a join takes it. The length header's CRC is computed once per distinct
    length."""
    value, pack_i, pack_q = google_crc32c.value, _U32.pack, _U64.pack
    headers: Dict[int, bytes] = {}
    parts: List[bytes] = []
    for data in records:
        n = len(data)
        header = headers.get(n)
        if header is None:
            length = pack_q(n)
            header = headers[n] = length + pack_i(masked_crc32c(length))
        crc = value(data)
        parts += (header, data, pack_i((((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF))
    return parts


FRAME_HEADER_BYTES = 12  # before a record's data: its length (8 bytes) and the length's masked CRC (4)
FRAME_TRAILER_BYTES = 4  # after it: the data's masked CRC
FRAME_OVERHEAD_BYTES = FRAME_HEADER_BYTES + FRAME_TRAILER_BYTES


def frame_data(frame: bytes) -> bytes:
    """The record inside one TFRecord frame (frame_record's inverse; the CRCs are not checked)."""
    return frame[FRAME_HEADER_BYTES:len(frame) - FRAME_TRAILER_BYTES]


def frame_sizes(records: Sequence[bytes]) -> np.ndarray:
    """Each record's TFRecord frame length: len(record) + FRAME_OVERHEAD_BYTES."""
    sizes = np.fromiter(map(len, records), np.int64, count=len(records))
    sizes += FRAME_OVERHEAD_BYTES
    return sizes


class TFRecordWriter:
    """Writes framed records to a binary stream, optionally gzip-compressed with a fixed header.

    The gzip header carries no timestamp or file name (mtime=0) so output bytes are reproducible.
    """

    def __init__(self, stream: BinaryIO, compression: Optional[str] = None):
        self._raw = stream
        self._gzip = gzip.GzipFile(filename="", mode="wb", fileobj=stream, mtime=0) if compression == "gzip" else None
        self._out = self._gzip or stream
        self.count = 0

    def write(self, data: bytes) -> None:
        self._out.write(frame_record(data))
        self.count += 1

    def write_framed(self, chunks: Iterable[Tuple[bytes, int]]) -> None:
        """Writes records already framed (spill.py's chunks: frames back to back, and how many)."""
        for data, count in chunks:
            self._out.write(data)
            self.count += count

    def close(self) -> None:
        if self._gzip is not None:
            self._gzip.close()
        self._raw.close()


def read_records(stream: BinaryIO, compression: Optional[str] = None, path: str = "<stream>") -> Iterator[bytes]:
    """Yields the records of a TFRecord stream, checking both CRCs; errors name the path."""
    src = gzip.GzipFile(fileobj=stream, mode="rb") if compression == "gzip" else stream
    index = 0
    while True:
        header = src.read(12)
        if not header:
            return
        if len(header) < 12:
            raise IOError(f"{path}: truncated TFRecord header at record {index}")
        (length,) = struct.unpack("<Q", header[:8])
        (crc,) = struct.unpack("<I", header[8:])
        if crc != masked_crc32c(header[:8]):
            raise IOError(f"{path}: corrupt length CRC at record {index}")
        data = src.read(length)
        footer = src.read(4)
        if len(data) < length or len(footer) < 4:
            raise IOError(f"{path}: truncated TFRecord data at record {index}")
        if struct.unpack("<I", footer)[0] != masked_crc32c(data):
            raise IOError(f"{path}: corrupt data CRC at record {index}")
        yield data
        index += 1


def read_records_from_path(path: str, compression: Optional[str] = None) -> Iterator[bytes]:
    """Reads a local or remote (Beam FileSystems) TFRecord file."""
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
        from apache_beam.io.filesystem import CompressionTypes  # pylint: disable=import-outside-toplevel

        stream = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    else:
        stream = io.open(path, "rb")
    with stream:
        yield from read_records(stream, compression, path)
