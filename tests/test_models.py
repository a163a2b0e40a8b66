"""The zoo: every model's fused form equals its multi-branch form and has the plain shape."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import random_variables, rel_l2
from nas_jax import MODELS, create_model, fuse_params
from nas_jax.pruning.graph import build_layer_graph
from nas_jax.rep.blocks import ConvBN
from nas_jax.rep.fuse import deploy_form
from nas_jax.rep.kinds import BLOCK_MODULES, KINDS, markdown_table
from nas_jax.rep.walk import intercept_modules

X_SHAPE = (2, 64, 64, 3)


def _kernel_shapes(params):
    """{path: kernel shape} of every conv / linear kernel; BN and bias leaves left out."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(p[:-1]): leaf.shape for p, leaf in flat if p[-1].key == "kernel"}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("block", ["dbb", "orepa", "repnas", "repnas_online"])
def test_deploy_form_has_the_plain_structure(name, block):
    x = jax.ShapeDtypeStruct(X_SHAPE, jnp.float32)
    plain = create_model(name, block="plain", num_classes=7, width=0.25)
    plain_vars = jax.eval_shape(plain.init, jax.random.key(0), x)
    model = create_model(name, block=block, num_classes=7, width=0.25)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    deploy_vars = jax.eval_shape(lambda v: fuse_params(model, v)[1], variables)
    deploy_model = deploy_form(model)
    assert deploy_model == plain.clone(block="deploy")  # the zoo's plain network, built as a deploy form
    assert set(deploy_vars) == {"params"}
    assert _kernel_shapes(deploy_vars["params"]) == _kernel_shapes(plain_vars["params"])
    n_plain = sum(np.prod(l.shape) for l in jax.tree.leaves(plain_vars["params"]))
    n_deploy = sum(np.prod(l.shape) for l in jax.tree.leaves(deploy_vars["params"]))
    n_bn_scales = sum(np.prod(l.shape) for p, l in jax.tree_util.tree_flatten_with_path(plain_vars["params"])[0]
                      if p[-1].key == "scale")
    assert n_deploy == n_plain - n_bn_scales  # BN (scale, bias) became one conv bias
    # the deploy network runs and has what the deploy model expects
    expected = jax.eval_shape(deploy_model.init, jax.random.key(0), x)
    assert jax.tree.map(lambda a: a.shape, expected) == jax.tree.map(lambda a: a.shape, deploy_vars)


@pytest.mark.parametrize("name,block", [("resnet18", "dbb"), ("resnet50", "repnas"), ("mobilenet_v1", "dbb"),
                                        ("mobilenet_v2", "repnas"), ("repvgg_a0", "repnas"), ("repvgg_b0", "dbb"),
                                        ("mobilenet_v1", "orepa"), ("resnet18", "repnas_online")])
def test_fused_model_equals_multi_branch_model(name, block):
    model = create_model(name, block=block, num_classes=5, width=0.125)
    x = jax.random.normal(jax.random.key(1), X_SHAPE)
    variables = random_variables(model, x, seed=3, scale=0.1)
    y = jax.jit(model.apply)(variables, x)
    deploy_model = deploy_form(model)
    deploy_vars = jax.jit(lambda v: fuse_params(model, v)[1])(variables)
    y_deploy = jax.jit(deploy_model.apply)(deploy_vars, x)
    assert rel_l2(y_deploy, y) < 1e-5


def test_fuse_params_does_not_mutate_and_keeps_the_classifier():
    model = create_model("resnet18", block="dbb", num_classes=3, width=0.125)
    variables = random_variables(model, jnp.zeros(X_SHAPE))
    before = jax.tree.map(np.array, variables)
    deploy_vars = jax.jit(lambda v: fuse_params(model, v)[1])(variables)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.array, variables))
    np.testing.assert_array_equal(deploy_vars["params"]["linear"]["kernel"], variables["params"]["linear"]["kernel"])


def test_repnas_static_mask_is_honoured_by_the_model_and_the_fusion():
    model = create_model("repvgg_a0", block="repnas", num_classes=4, width=0.125)
    x = jax.random.normal(jax.random.key(1), X_SHAPE)
    variables = random_variables(model, x, seed=5, scale=0.1)
    mask = (("features_2", (True, False, False, False, True, False)), ("features_3", (False,) * 6))
    masked = model.clone(branch_mask=mask)
    y = jax.jit(masked.apply)(variables, x)
    assert rel_l2(y, jax.jit(model.apply)(variables, x)) > 1e-3  # the mask changes the network
    deploy_model = deploy_form(masked)
    deploy_vars = jax.jit(lambda v: fuse_params(masked, v)[1])(variables)
    assert rel_l2(jax.jit(deploy_model.apply)(deploy_vars, x), y) < 1e-5


def test_unknown_model_or_block_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        create_model("resnet19")
    with pytest.raises(ValueError, match="unknown block kind 'acb'"):
        create_model("resnet18", block="acb")


@pytest.mark.parametrize("width,classes,size", [(0.25, 10, 32), (0.5, 1000, 96)])
def test_any_width_classes_and_input_size(width, classes, size):
    model = create_model("mobilenet_v1", num_classes=classes, width=width)
    out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), jnp.zeros((1, size, size, 3)))[0])
    assert out.shape == (1, classes) and out.dtype == jnp.float32


def test_docs_list_every_block_kind_as_the_table_says():
    with open(os.path.join(os.path.dirname(__file__), "..", "docs", "custom_models.md")) as f:
        assert markdown_table() in f.read(), "docs/custom_models.md: paste nas_jax.rep.kinds.markdown_table()"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_block_kind_builds_its_module_where_it_applies_and_the_graph_sees_one_layer(kind):
    """conv_block, the pruning graph and fuse_params all read the kinds table: a kind's
    layers are its module where the kind applies, a ConvBN elsewhere; the graph has the
    plain network's layers under every kind; every kind fuses to the deploy layout."""
    row = KINDS[kind]
    model = create_model("mobilenet_v2", block=kind, num_classes=5, width=0.25)  # 1x1 and 3x3 layers
    variables = jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
    modules = {}

    def record(module, call, x):
        modules[module.path] = type(module)
        return call(x)

    with intercept_modules([(BLOCK_MODULES, record)]):
        jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 32, 32, 3)), train=False), variables)
    assert modules and set(modules.values()) <= {row.module, ConvBN}
    assert row.module in modules.values()
    plain_graph = build_layer_graph(create_model("mobilenet_v2", num_classes=5, width=0.25), (1, 32, 32, 3))
    graph = build_layer_graph(model, (1, 32, 32, 3))
    assert [(l.path, l.kernel, l.groups) for l in graph.layers] == [(l.path, l.kernel, l.groups)
                                                                    for l in plain_graph.layers]
    for layer in graph.layers:
        if layer.kind != "dense":
            path = tuple(layer.path.split("/"))
            assert modules[path] is (row.module if row.applies(layer.kernel[0]) else ConvBN), layer.path
    deploy_vars = jax.eval_shape(lambda v: fuse_params(model, v)[1], variables)
    assert set(deploy_vars) == {"params"}
