"""TFRecord framing (length + masked CRC32C) for writing and reading, without TensorFlow."""
import gzip
import io
import struct
from typing import BinaryIO, Dict, Iterable, Iterator, List, Optional

import google_crc32c

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

    def write_many(self, records: Iterable[bytes], batch_bytes: int = 4 << 20) -> None:
        """Writes every record of `records`, the same bytes as write() one by one, framed in batches of about
        batch_bytes joined into one write: a shard of 10^5 small records costs few write calls, and the
        length header's CRC is computed once per distinct length."""
        value, pack_i, pack_q = google_crc32c.value, _U32.pack, _U64.pack
        headers: Dict[int, bytes] = {}
        parts: List[bytes] = []
        size = count = 0
        for data in records:
            n = len(data)
            header = headers.get(n)
            if header is None:
                length = pack_q(n)
                header = headers[n] = length + pack_i(masked_crc32c(length))
            crc = value(data)
            parts += (header, data, pack_i((((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF))
            size += n
            count += 1
            if size >= batch_bytes:
                self._out.write(b"".join(parts))
                parts.clear()
                size = 0
        if parts:
            self._out.write(b"".join(parts))
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
