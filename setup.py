"""Packaging for oskdft: OS-KDFT speaker-verification recipes.

`utils/setup_env.sh` installs this package editable, with the `test` and `lilcom` extras, into
`.venv`.
"""

from setuptools import find_packages, setup

setup(
    name="oskdft",
    version="0.1.0",
    description=(
        "Kaldi-style recipes that compress wav2vec 2.0 / HuBERT / WavLM into a small "
        "speaker-verification model with One-Step Knowledge Distillation and Fine-Tuning"
    ),
    python_requires=">=3.10",
    packages=find_packages(include=["oskdft", "oskdft.*"]),
    install_requires=[
        # torch>=2.11 is what lets torchaudio 2.11 (the only release without a torch pin) install.
        "torch>=2.11",
        "torchaudio>=2.11",
        "transformers>=4.40",
        "lhotse>=1.24",
        "urllib3",  # lhotse imports it but does not declare it
        "kaldiio>=2.18",
        "numpy>=1.24",
        "scipy>=1.10",
        "soundfile>=0.12",
        "pyyaml>=6",
        "tqdm",
        "matplotlib>=3.7",
        "onnx>=1.16",
        "onnxruntime>=1.18",
        "onnxscript",
    ],
    extras_require={
        # ruff, mypy and the stubs mypy needs: the static gates of utils/lint.sh.
        "test": [
            "pytest>=7",
            "tensorboard",
            "ruff>=0.17,<0.18",  # a new minor release may restyle the tree
            "mypy>=2.4,<3",
            "types-PyYAML",
            "types-tqdm",
        ],
        "tensorboard": ["tensorboard"],
        # Lossy teacher-cache storage (teacher.cache_storage: lilcom); fp16, the default, needs
        # nothing. Stage 2 names the package when it is missing.
        "lilcom": ["lilcom"],
    },
    entry_points={"console_scripts": ["oskdft=oskdft.cli.main:main"]},
)
