"""TFRecord framing: TensorFlow reads what we write (plain and gzip), and we detect corruption."""
import io

import pytest

from transforms.tfrecord_io import TFRecordWriter, frame_parts, frame_sizes, read_records


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_tensorflow_reads_our_records(tmp_path, compression):
    import tensorflow as tf
    path = tmp_path / ("x.tfrecord.gz" if compression else "x.tfrecord")
    records = [b"", b"a", bytes(range(256)) * 40]
    writer = TFRecordWriter(open(path, "wb"), compression)
    for r in records:
        writer.write(r)
    writer.close()
    got = [r.numpy() for r in tf.data.TFRecordDataset(str(path), compression_type="GZIP" if compression else "")]
    assert got == records
    with open(path, "rb") as f:
        assert list(read_records(f, compression)) == records


def test_gzip_output_is_reproducible(tmp_path):
    outs = []
    for i in range(2):
        buf = io.BytesIO()
        buf.close = lambda: None  # keep the bytes readable after the writer closes
        w = TFRecordWriter(buf, "gzip")
        w.write(b"same")
        w.close()
        outs.append(buf.getvalue())
    assert outs[0] == outs[1]


def test_corrupt_record_is_reported_with_path():
    buf = io.BytesIO()
    buf.close = lambda: None
    w = TFRecordWriter(buf)
    w.write(b"hello world")
    data = bytearray(buf.getvalue())
    data[14] ^= 0xFF
    with pytest.raises(IOError, match="somefile.*corrupt data CRC"):
        list(read_records(io.BytesIO(bytes(data)), None, "somefile"))


@pytest.mark.parametrize("compression", [None, "gzip"])
def test_framed_chunks_match_write(compression):
    records = [bytes([i % 251]) * (i * 37 % 300) for i in range(500)]  # repeated and distinct lengths, empty
    frames, sizes = b"".join(frame_parts(records)), frame_sizes(records)
    assert sizes.tolist() == [len(r) + 16 for r in records] and len(frames) == int(sizes.sum())
    one, many = io.BytesIO(), io.BytesIO()
    a, b = TFRecordWriter(one, compression), TFRecordWriter(many, compression)
    a_close, b_close = one.getvalue, many.getvalue
    for r in records:
        a.write(r)
    cut = int(sizes[:123].sum())
    b.write_framed([(frames[:cut], 123), (frames[cut:], len(records) - 123)])  # several chunks
    assert a.count == b.count == len(records)
    one.close = many.close = lambda: None  # keep the buffers readable after close
    a.close()
    b.close()
    assert a_close() == b_close()
    assert list(read_records(io.BytesIO(b_close()), compression)) == records
