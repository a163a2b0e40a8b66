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
        "torch": ["torch>=2.13.0"],
        "dev": ["pytest>=9.2", "pytest-xdist>=3.8", "hypothesis>=6.170"],
    },
    entry_points={"console_scripts": ["nas-jax=nas_jax.cli:main"]},
)
