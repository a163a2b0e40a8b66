"""nas_jax: RepNAS and Graph Pruning for vision networks in JAX/Flax.

The call most users want::

    from nas_jax import create_model, fuse_params
    model = create_model("resnet18", block="dbb", num_classes=10)
    ...  # train
    deploy_model, deploy_variables = fuse_params(model, variables)
"""
from nas_jax.models import MODELS, create_model
from nas_jax.rep.from_plain import branches_from_plain
from nas_jax.rep.fuse import fuse_params

__all__ = ["create_model", "fuse_params", "branches_from_plain", "MODELS"]
__version__ = "0.1.0"
