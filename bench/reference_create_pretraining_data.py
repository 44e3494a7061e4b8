"""A plain re-statement of google-research/bert's `create_pretraining_data.py` (commit eedf5716), the bench's baseline.

Written from the reference's algorithm, not copied: one `random.Random(random_seed)` drives everything; every
document is tokenized with the pure-Python BERT tokenizer (tests/reference_tokenization.py, a restatement of
`tokenization.py`) and held in memory as token strings; documents are shuffled; for each dupe copy and each
document, `create_instances_from_document` (random-next documents drawn from the whole corpus, "put back"
of unused segments, truncation one token at a time from the longer segment, front or back by a coin) and
`create_masked_lm_predictions` (whole-word candidates on "##" pieces, shuffled, 80 % [MASK] / 10 % kept /
10 % random vocabulary word) build a `TrainingInstance` list; all instances are shuffled and written as one
`tf.train.Example` each through `tf.io.TFRecordWriter`. Same flags and defaults as the reference (the
example logging of the first 20 instances is left out).

    python bench/reference_create_pretraining_data.py --input_file=... --vocab_file=... --output_file=... \
        --max_seq_length=128 --max_predictions_per_seq=20 --dupe_factor=5 --do_whole_word_mask=True

Prints the number of instances written on its last line.
"""
import argparse
import collections
import os
import random
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tensorflow as tf  # noqa: E402  (the reference's writer and Example proto)

from tests.reference_tokenization import ReferenceTokenizer, load_tokens  # noqa: E402

MaskedLmInstance = collections.namedtuple("MaskedLmInstance", ["index", "label"])


class TrainingInstance:
    """One sentence pair, as token strings."""

    def __init__(self, tokens, segment_ids, masked_lm_positions, masked_lm_labels, is_random_next):
        self.tokens = tokens
        self.segment_ids = segment_ids
        self.is_random_next = is_random_next
        self.masked_lm_positions = masked_lm_positions
        self.masked_lm_labels = masked_lm_labels


def create_int_feature(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))


def create_float_feature(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))


def write_instances(instances, vocab, max_seq_length, max_predictions_per_seq, output_file):
    writer = tf.io.TFRecordWriter(output_file)
    for instance in instances:
        input_ids = [vocab[t] for t in instance.tokens]
        input_mask = [1] * len(input_ids)
        segment_ids = list(instance.segment_ids)
        assert len(input_ids) <= max_seq_length
        while len(input_ids) < max_seq_length:
            input_ids.append(0)
            input_mask.append(0)
            segment_ids.append(0)
        masked_lm_positions = list(instance.masked_lm_positions)
        masked_lm_ids = [vocab[t] for t in instance.masked_lm_labels]
        masked_lm_weights = [1.0] * len(masked_lm_ids)
        while len(masked_lm_positions) < max_predictions_per_seq:
            masked_lm_positions.append(0)
            masked_lm_ids.append(0)
            masked_lm_weights.append(0.0)
        features = collections.OrderedDict()
        features["input_ids"] = create_int_feature(input_ids)
        features["input_mask"] = create_int_feature(input_mask)
        features["segment_ids"] = create_int_feature(segment_ids)
        features["masked_lm_positions"] = create_int_feature(masked_lm_positions)
        features["masked_lm_ids"] = create_int_feature(masked_lm_ids)
        features["masked_lm_weights"] = create_float_feature(masked_lm_weights)
        features["next_sentence_labels"] = create_int_feature([1 if instance.is_random_next else 0])
        writer.write(tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString())
    writer.close()
    return len(instances)


def create_training_instances(input_files, tokenizer, max_seq_length, dupe_factor, short_seq_prob,
                              masked_lm_prob, max_predictions_per_seq, do_whole_word_mask, rng):
    all_documents = [[]]
    # One sentence per line, blank lines between documents.
    for input_file in input_files:
        # The reference reads through tf.gfile.GFile (TensorFlow's file layer) and decodes with
        # tokenization.convert_to_unicode (UTF-8, errors ignored).
        with tf.io.gfile.GFile(input_file, "rb") as reader:
            for raw in reader:
                line = raw.decode("utf-8", "ignore").strip()
                if not line:
                    all_documents.append([])
                else:
                    tokens = tokenizer.tokenize(line)
                    if tokens:
                        all_documents[-1].append(tokens)
    all_documents = [x for x in all_documents if x]
    rng.shuffle(all_documents)
    vocab_words = list(tokenizer.vocab.keys())
    instances = []
    for _ in range(dupe_factor):
        for document_index in range(len(all_documents)):
            instances.extend(create_instances_from_document(
                all_documents, document_index, max_seq_length, short_seq_prob, masked_lm_prob,
                max_predictions_per_seq, vocab_words, do_whole_word_mask, rng))
    rng.shuffle(instances)
    return instances


def create_instances_from_document(all_documents, document_index, max_seq_length, short_seq_prob,
                                   masked_lm_prob, max_predictions_per_seq, vocab_words, do_whole_word_mask, rng):
    document = all_documents[document_index]
    max_num_tokens = max_seq_length - 3  # [CLS], [SEP], [SEP]
    target_seq_length = max_num_tokens
    if rng.random() < short_seq_prob:
        target_seq_length = rng.randint(2, max_num_tokens)
    instances = []
    current_chunk = []
    current_length = 0
    i = 0
    while i < len(document):
        segment = document[i]
        current_chunk.append(segment)
        current_length += len(segment)
        if i == len(document) - 1 or current_length >= target_seq_length:
            if current_chunk:
                a_end = 1
                if len(current_chunk) >= 2:
                    a_end = rng.randint(1, len(current_chunk) - 1)
                tokens_a = []
                for j in range(a_end):
                    tokens_a.extend(current_chunk[j])
                tokens_b = []
                if len(current_chunk) == 1 or rng.random() < 0.5:
                    is_random_next = True
                    target_b_length = target_seq_length - len(tokens_a)
                    # Up to ten tries for a document other than this one.
                    for _ in range(10):
                        random_document_index = rng.randint(0, len(all_documents) - 1)
                        if random_document_index != document_index:
                            break
                    random_document = all_documents[random_document_index]
                    random_start = rng.randint(0, len(random_document) - 1)
                    for j in range(random_start, len(random_document)):
                        tokens_b.extend(random_document[j])
                        if len(tokens_b) >= target_b_length:
                            break
                    # The segments after a_end were not used: put them back.
                    i -= len(current_chunk) - a_end
                else:
                    is_random_next = False
                    for j in range(a_end, len(current_chunk)):
                        tokens_b.extend(current_chunk[j])
                truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng)
                assert len(tokens_a) >= 1
                assert len(tokens_b) >= 1
                tokens = ["[CLS]"]
                segment_ids = [0]
                for token in tokens_a:
                    tokens.append(token)
                    segment_ids.append(0)
                tokens.append("[SEP]")
                segment_ids.append(0)
                for token in tokens_b:
                    tokens.append(token)
                    segment_ids.append(1)
                tokens.append("[SEP]")
                segment_ids.append(1)
                tokens, masked_lm_positions, masked_lm_labels = create_masked_lm_predictions(
                    tokens, masked_lm_prob, max_predictions_per_seq, vocab_words, do_whole_word_mask, rng)
                instances.append(TrainingInstance(tokens, segment_ids, masked_lm_positions, masked_lm_labels,
                                                  is_random_next))
            current_chunk = []
            current_length = 0
        i += 1
    return instances


def create_masked_lm_predictions(tokens, masked_lm_prob, max_predictions_per_seq, vocab_words,
                                 do_whole_word_mask, rng):
    cand_indexes = []
    for i, token in enumerate(tokens):
        if token == "[CLS]" or token == "[SEP]":
            continue
        # Whole-word masking: a "##" piece joins the candidate before it.
        if do_whole_word_mask and len(cand_indexes) >= 1 and token.startswith("##"):
            cand_indexes[-1].append(i)
        else:
            cand_indexes.append([i])
    rng.shuffle(cand_indexes)
    output_tokens = list(tokens)
    num_to_predict = min(max_predictions_per_seq, max(1, int(round(len(tokens) * masked_lm_prob))))
    masked_lms = []
    covered_indexes = set()
    for index_set in cand_indexes:
        if len(masked_lms) >= num_to_predict:
            break
        # A whole word that would go over the budget is skipped.
        if len(masked_lms) + len(index_set) > num_to_predict:
            continue
        if any(index in covered_indexes for index in index_set):
            continue
        for index in index_set:
            covered_indexes.add(index)
            if rng.random() < 0.8:
                masked_token = "[MASK]"
            elif rng.random() < 0.5:
                masked_token = tokens[index]
            else:
                masked_token = vocab_words[rng.randint(0, len(vocab_words) - 1)]
            output_tokens[index] = masked_token
            masked_lms.append(MaskedLmInstance(index=index, label=tokens[index]))
    assert len(masked_lms) <= num_to_predict
    masked_lms = sorted(masked_lms, key=lambda x: x.index)
    return output_tokens, [p.index for p in masked_lms], [p.label for p in masked_lms]


def truncate_seq_pair(tokens_a, tokens_b, max_num_tokens, rng):
    """Removes one token at a time from the longer segment, front or back at random."""
    while len(tokens_a) + len(tokens_b) > max_num_tokens:
        trunc_tokens = tokens_a if len(tokens_a) > len(tokens_b) else tokens_b
        assert len(trunc_tokens) >= 1
        if rng.random() < 0.5:
            del trunc_tokens[0]
        else:
            trunc_tokens.pop()


def _bool(text: str) -> bool:
    return text.lower() in ("1", "true", "yes")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_file", required=True, help="Comma-separated files.")
    p.add_argument("--output_file", required=True)
    p.add_argument("--vocab_file", required=True)
    p.add_argument("--do_lower_case", type=_bool, default=True)
    p.add_argument("--do_whole_word_mask", type=_bool, default=False)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--max_predictions_per_seq", type=int, default=20)
    p.add_argument("--random_seed", type=int, default=12345)
    p.add_argument("--dupe_factor", type=int, default=10)
    p.add_argument("--masked_lm_prob", type=float, default=0.15)
    p.add_argument("--short_seq_prob", type=float, default=0.1)
    a = p.parse_args(argv)
    tokenizer = ReferenceTokenizer(load_tokens(a.vocab_file), do_lower_case=a.do_lower_case)
    rng = random.Random(a.random_seed)
    instances = create_training_instances(a.input_file.split(","), tokenizer, a.max_seq_length, a.dupe_factor,
                                          a.short_seq_prob, a.masked_lm_prob, a.max_predictions_per_seq,
                                          a.do_whole_word_mask, rng)
    print(write_instances(instances, tokenizer.vocab, a.max_seq_length, a.max_predictions_per_seq, a.output_file))


if __name__ == "__main__":
    main()
