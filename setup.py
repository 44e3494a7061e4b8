"""bertbeam: corpus -> BERT/ALBERT pretraining TFRecords (Apache Beam) and Flax pretraining.

This file is also Beam's `--setup_file` for Dataflow workers: it stages all four packages.
"""
import setuptools

# Data-pipeline requirements: what a Dataflow worker needs (pinned-compatible ranges).
PIPELINE_REQUIRES = [
    "apache-beam[gcp]>=2.60,<3",
    "tensorflow>=2.18,<2.22",
    "tensorflow-text>=2.18,<2.22",
    "tokenizers>=0.20,<1",
    "sentencepiece>=0.2,<0.3",
    "numpy>=1.26,<3",
    "google-crc32c>=1.5,<2",
    "pyyaml>=6,<7",
    "psutil>=5.9",
]

# Training requirements: never needed on Dataflow workers.
TRAIN_REQUIRES = [
    "jax>=0.4.35",
    "flax>=0.10,<0.13",
    "optax>=0.2.4,<0.3",
    "orbax-checkpoint>=0.10,<0.13",
    "tensorboardX>=2.6",
]

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
        "train": TRAIN_REQUIRES,
        "dev": TRAIN_REQUIRES + ["pytest>=8", "pytest-xdist>=3", "pysbd>=0.3", "nltk>=3.8"] + DASK_REQUIRES,
        "dask": DASK_REQUIRES,
    },
    entry_points={"console_scripts": ["bertbeam=pipeline.main:main"]},
)
