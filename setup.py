"""bertbeam: corpus -> BERT/ALBERT pretraining TFRecords (Apache Beam) and Flax pretraining.

This file is also Beam's `--setup_file` for Dataflow workers: it stages all four packages.
"""
import setuptools

# Data-pipeline requirements: what a Dataflow worker needs (pinned-compatible ranges).
PIPELINE_REQUIRES = [
    "apache-beam>=2.60,<3",
    "tokenizers>=0.20,<1",
    "sentencepiece>=0.2,<0.3",
    "numpy>=1.26,<3",
    "google-crc32c>=1.5,<2",
    "pyyaml>=6,<7",
    "psutil>=5.9",
]

# Google Cloud (gs:// paths, `--runner=DataflowRunner`, `bertbeam launch dataflow`): an extra, not a default. Beam
# imports every Google Cloud client it finds (storage, pubsub, bigquery, ...): ~0.3 CPU-s more start-up in every
# build process, for a local build that never touches them. Dataflow's worker image has them already.
DATAFLOW_REQUIRES = ["apache-beam[gcp]>=2.60,<3"]

# Training requirements: never needed on Dataflow workers. TensorFlow is here (tf.data input, TF1 checkpoints):
# the build never imports it (tests/test_progress_build.py checks), so workers install ~600 MB less.
TRAIN_REQUIRES = [
    "tensorflow>=2.18,<2.22",
    "jax>=0.4.35",
    "flax>=0.10,<0.13",
    "optax>=0.2.4,<0.3",
    "orbax-checkpoint>=0.10,<0.13",
    "tensorboardX>=2.6",
]

# Hugging Face round trip in the tests (tests/test_hf_*.py): transformers 5 is PyTorch-only. torch==2.13.0 is
# pinned because on this project's machines pip finds it as a CPU build (~190 MB wheel, 754 MB installed);
# PyPI's own Linux x86_64 wheels are CUDA builds that need ~2.5 GB of nvidia-* packages even to import.
HF_TEST_REQUIRES = ["transformers>=5,<6", "torch==2.13.0"]
# Beam's DaskRunner (`--runner=DaskRunner`); the dev extra has it so the distributed-runner tests run in CI.
DASK_REQUIRES = ["dask[distributed]>=2024.4.2"]

setuptools.setup(
    name="bertbeam",
    version="0.1.0",
    description="Corpus to BERT/ALBERT pretraining data with Apache Beam, and Flax pretraining on it.",
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*", "transforms", "transforms.*",
                                                "vocab", "vocab.*", "training", "training.*"]),
    package_data={"training": ["configs/*.json", "configs/*.yaml"], "pipeline": ["data/*"]},
    python_requires=">=3.10",
    install_requires=PIPELINE_REQUIRES,
    extras_require={
        "dataflow": DATAFLOW_REQUIRES,
        "train": TRAIN_REQUIRES,
        "hf": HF_TEST_REQUIRES,
        "dask": DASK_REQUIRES,
        # tensorflow-text: only bench/bench_tokenize.py compares against it (the build does not use it).
        "dev": TRAIN_REQUIRES + ["pytest>=8", "pytest-xdist>=3", "pysbd>=0.3", "nltk>=3.8",
                                 "tensorflow-text>=2.18,<2.22"] + HF_TEST_REQUIRES + DASK_REQUIRES,
    },
    entry_points={"console_scripts": ["bertbeam=pipeline.main:main"]},
)
