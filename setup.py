from setuptools import find_packages, setup

setup(
    name="nas_jax",
    version="0.1.0",
    description="RepNAS and Graph Pruning for vision networks in JAX/Flax",
    packages=find_packages(include=["nas_jax", "nas_jax.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.10.2",
        "flax>=0.12.8",
        "optax>=0.2.8",
        "orbax-checkpoint>=0.12.8",
        "ml-collections>=1.1.0",
        "jraph>=0.0.6.dev0",
        "tensorflow-datasets>=4.9.10",
        "grain>=0.2.18",
        "scikit-learn>=1.9",
        "matplotlib>=3.11",
        "tqdm>=4.70",
        "tensorboardX>=2.6.5",
        "numpy>=2.0",
    ],
    extras_require={
        # torchvision / timm: only the tests build their classes; pin the torchvision that
        # matches the installed torch (scripts/setup.sh) or pip fetches another torch
        "torch": ["torch>=2.13.0", "torchvision>=0.28.0", "timm>=1.0.31"],
        # plus `pip install --no-deps jax2onnx==0.17.1` (its orbax pin conflicts with ours)
        "onnx": ["onnx>=1.23", "onnx-ir>=1.1", "onnxruntime>=1.31", "equinox>=0.13.1", "dm-pix>=0.4.4",
                 "einops>=0.8.1"],
        # the published linen models the tests run the pipeline on (tests/external_models.py);
        # plus `pip install --no-deps flaxmodels==0.1.3` (it asks for the `dataclasses`
        # backport, which Python 3.11 must not get); these are what it imports
        "external": ["jax-resnet==0.0.4", "h5py>=3.16", "regex>=2026.11.19", "requests>=2.34", "pillow>=13.0"],
        "dev": ["pytest>=9.2", "pytest-xdist>=3.8", "hypothesis>=6.170"],
    },
    entry_points={"console_scripts": ["nas-jax=nas_jax.cli:main"]},
)
