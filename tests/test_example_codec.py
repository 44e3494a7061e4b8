"""The fast Example encoder writes exactly TensorFlow's deterministic bytes and parses with BERT's spec."""
import numpy as np
import pytest

from transforms import example_codec


def _tf_bytes(features):
    import tensorflow as tf
    feats = {}
    for name, arr in features.items():
        if np.issubdtype(arr.dtype, np.floating):
            feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=arr.tolist()))
        else:
            feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=arr.tolist()))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString(deterministic=True)


@pytest.mark.parametrize("max_value", [1, 127, 128, 16383, 16384, 119546, 2 ** 21 + 5, 2 ** 40])
def test_bytes_equal_tensorflow_deterministic(max_value):
    rng = np.random.default_rng(max_value)
    n, seq, pred = 7, 16, 5
    batch = {
        "input_ids": rng.integers(0, max_value + 1, (n, seq)),
        "input_mask": rng.integers(0, 2, (n, seq)),
        "masked_lm_weights": rng.random((n, pred)).astype(np.float32),
        "next_sentence_labels": rng.integers(0, 2, (n, 1)),
    }
    batch["input_ids"][0, 0] = max_value
    records = example_codec.encode_examples(batch)
    assert len(records) == n
    for row, record in enumerate(records):
        assert record == _tf_bytes({k: v[row] for k, v in batch.items()})


def test_parses_with_run_pretraining_feature_spec():
    import tensorflow as tf
    seq, pred = 12, 3
    batch = {
        "input_ids": np.arange(seq)[None, :] + 100,
        "input_mask": np.ones((1, seq), np.int64),
        "segment_ids": np.zeros((1, seq), np.int64),
        "masked_lm_positions": np.array([[1, 2, 0]]),
        "masked_lm_ids": np.array([[5, 6, 0]]),
        "masked_lm_weights": np.array([[1.0, 1.0, 0.0]], np.float32),
        "next_sentence_labels": np.array([[1]]),
    }
    record = example_codec.encode_examples(batch)[0]
    spec = {  # google-research/bert run_pretraining.py input_fn_builder
        "input_ids": tf.io.FixedLenFeature([seq], tf.int64),
        "input_mask": tf.io.FixedLenFeature([seq], tf.int64),
        "segment_ids": tf.io.FixedLenFeature([seq], tf.int64),
        "masked_lm_positions": tf.io.FixedLenFeature([pred], tf.int64),
        "masked_lm_ids": tf.io.FixedLenFeature([pred], tf.int64),
        "masked_lm_weights": tf.io.FixedLenFeature([pred], tf.float32),
        "next_sentence_labels": tf.io.FixedLenFeature([1], tf.int64),
    }
    parsed = tf.io.parse_single_example(record, spec)
    assert parsed["input_ids"].numpy().tolist() == list(range(100, 100 + seq))
    assert parsed["masked_lm_weights"].numpy().tolist() == [1.0, 1.0, 0.0]
    decoded = example_codec.decode_example(record)
    assert decoded["masked_lm_ids"].tolist() == [5, 6, 0]


def test_rejects_negative_ids():
    with pytest.raises(ValueError):
        example_codec.encode_examples({"input_ids": np.array([[-1, 2]])})


def test_bytes_feature_equals_tensorflow():
    import tensorflow as tf
    batch = {"document_id": np.array([[b"doc-1"], ["é".encode()], [b""]], dtype=object),
             "input_ids": np.array([[1], [2], [3]])}
    for row, record in enumerate(example_codec.encode_examples(batch)):
        want = tf.train.Example(features=tf.train.Features(feature={
            "document_id": tf.train.Feature(bytes_list=tf.train.BytesList(value=[batch["document_id"][row, 0]])),
            "input_ids": tf.train.Feature(int64_list=tf.train.Int64List(value=[row + 1]))}))
        assert record == want.SerializeToString(deterministic=True)


def test_vectorised_encoder_equals_row_by_row_across_chunks():
    rng = np.random.default_rng(3)
    n = 5000  # more than one vectorised chunk
    batch = {"input_ids": rng.integers(0, 120000, (n, 9)), "input_mask": rng.integers(0, 2, (n, 9)),
             "masked_lm_weights": rng.random((n, 3)).astype(np.float32),
             "document_id": np.array([[f"d{i % 7}".encode() * (i % 3)] for i in range(n)], dtype=object)}
    assert example_codec.encode_examples(batch) == example_codec.encode_examples_slow(batch)


@pytest.mark.parametrize("top", [1, 200, 30522, 1 << 21, 1 << 40, (1 << 63) - 1])
def test_varint_flat_equals_python_varints(top):
    rng = np.random.default_rng(top % 1000)
    values = rng.integers(0, top, size=(37, 11), dtype=np.int64, endpoint=True)
    values[0, 0], values[-1, -1] = top, 0
    flat, row_len = example_codec.varint_flat(values)
    rows = [b"".join(example_codec._varint(int(x)) for x in row) for row in values]
    assert row_len.tolist() == [len(r) for r in rows]
    assert flat.tobytes() == b"".join(rows)



def test_vectorised_encoder_with_empty_payloads_equals_row_by_row():
    rng = np.random.default_rng(4)
    n = 300
    batch = {"a_empty": np.zeros((n, 0), np.int64), "input_ids": rng.integers(0, 1 << 30, (n, 5)),
             "z_empty": np.zeros((n, 0), np.float32)}
    assert example_codec.encode_examples(batch) == example_codec.encode_examples_slow(batch)


def test_decode_example_equals_tensorflow_on_every_kind_packed_or_not():
    """decode_example (no TensorFlow) reads what TensorFlow writes: int64 (negative and 64-bit too), float and
    bytes lists, packed (TF's own writer) and unpacked (other writers), empty lists and a kind-less feature."""
    import tensorflow as tf
    rng = np.random.default_rng(3)
    ints = [0, 1, 127, 128, 16383, 16384, 2**31, 2**63 - 1, -1, -2**63, -300]
    example = tf.train.Example(features=tf.train.Features(feature={
        "ids": tf.train.Feature(int64_list=tf.train.Int64List(value=ints + rng.integers(0, 10**6, 50).tolist())),
        "w": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0, 0.0, -2.5, 3.25e-7])),
        "doc": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"doc-1", "é".encode(), b""])),
        "none": tf.train.Feature(int64_list=tf.train.Int64List(value=[])),
        "bare": tf.train.Feature(),
    }))
    record = example.SerializeToString()
    got = example_codec.decode_example(record)
    want = example_pb2_values(example)
    assert sorted(got) == sorted(want)
    for name, values in want.items():
        assert got[name].tolist() == values, name
    assert got["ids"].dtype == np.int64 and got["w"].dtype == np.float32
    # Unpacked repeated fields (wire types 0 and 5), as some writers emit them: same values.
    ints_unpacked = b"\x1a" + _len_prefixed(b"\x08\x05\x08\x96\x01")  # Int64List{value: 5, value: 150}
    floats_unpacked = b"\x12" + _len_prefixed(b"\x0d" + np.float32(1.5).tobytes() + b"\x0d" + np.float32(-2).tobytes())
    entries = b"".join(b"\x0a" + _len_prefixed(b"\x0a" + _len_prefixed(key) + b"\x12" + _len_prefixed(feature))
                       for key, feature in ((b"a", ints_unpacked), (b"f", floats_unpacked)))
    unpacked = example_codec.decode_example(b"\x0a" + _len_prefixed(entries))
    assert unpacked["a"].tolist() == [5, 150] and unpacked["f"].tolist() == [1.5, -2.0]
    assert example_codec.decode_example(tf.train.Example().SerializeToString()) == {}
    with pytest.raises(example_codec.ExampleDecodeError):
        example_codec.decode_example(record[:-3])


def _len_prefixed(body: bytes) -> bytes:
    return example_codec._varint(len(body)) + body


def example_pb2_values(example):
    out = {}
    for name, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        if kind == "int64_list":
            out[name] = list(feature.int64_list.value)
        elif kind == "float_list":
            out[name] = [float(np.float32(v)) for v in feature.float_list.value]
        elif kind == "bytes_list":
            out[name] = list(feature.bytes_list.value)
        else:
            out[name] = []
    return out
