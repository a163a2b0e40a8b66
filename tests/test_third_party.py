"""torchvision and timm checkpoints in and out, against the real PyTorch classes with random
weights and BatchNorm statistics (eval mode, float32, relative L2 < 1e-5)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from nas_jax import branches_from_plain, create_model, fuse_params
from nas_jax.interop import (StateDictMismatchError, from_timm, from_torchvision, resize_torch_module, to_timm,
                             to_torchvision)
from helpers import randomize
from helpers import rel_l2
from torch_zoo import as_torch, random_eval, timm, torch, torch_out, torchvision

SIZE = 64


@pytest.fixture(scope="module")
def x():
    return jax.random.normal(jax.random.key(1), (2, SIZE, SIZE, 3))


CASES = [
    ("torchvision", "resnet18", lambda: torchvision.models.resnet18(num_classes=10)),
    ("torchvision", "resnet50", lambda: torchvision.models.resnet50(num_classes=10)),
    ("torchvision", "mobilenet_v2", lambda: torchvision.models.mobilenet_v2(num_classes=10, width_mult=0.5)),
    ("timm", "resnet18", lambda: timm.create_model("resnet18", num_classes=7)),
    ("timm", "resnet50", lambda: timm.create_model("resnet50", num_classes=7)),
    ("timm", "repvgg_a0", lambda: timm.create_model("repvgg_a0", num_classes=7)),
]


@pytest.mark.parametrize("source,name,build", CASES, ids=[f"{s}-{n}" for s, n, _ in CASES])
def test_weights_in_compute_what_pytorch_computes_and_go_back_out(x, source, name, build):
    module = random_eval(build())
    importer, exporter = (from_torchvision, to_torchvision) if source == "torchvision" else (from_timm, to_timm)
    model, variables = importer(name, module.state_dict(), (1, SIZE, SIZE, 3))
    expected = torch_out(module, x)
    assert rel_l2(jax.jit(model.apply)(variables, x), expected) < 1e-5
    # and back: the class loads the exported state_dict strictly and computes the same
    again = build()
    again.load_state_dict(as_torch(exporter(name, variables)), strict=True)
    assert rel_l2(torch_out(again.eval(), x), expected) < 1e-5


def test_torchvision_mobilenet_v2_at_a_width_reads_its_widths():
    module = torchvision.models.mobilenet_v2(num_classes=5, width_mult=0.35)
    model, variables = from_torchvision("mobilenet_v2", module.state_dict(), (1, SIZE, SIZE, 3))
    assert model.num_classes == 5
    assert variables["params"]["features_0"]["conv"]["kernel"].shape[-1] == module.features[0][0].out_channels


@settings(max_examples=2, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_pruned_network_loads_into_the_torchvision_class_strictly(x, seed):
    """Random per-layer widths (residual-coupled layers share one) -> torchvision names ->
    ``resize_torch_module`` -> ``load_state_dict(strict=True)``: same outputs; and the widths
    read back from the state_dict are the ones written."""
    rng = np.random.default_rng(seed)
    plain = create_model("resnet18", num_classes=10)
    stage_widths = [int(rng.integers(4, 64 * 2 ** s)) for s in range(4)]  # one per residual stage
    widths = [("stage0/conv1", stage_widths[0])]
    for s in range(4):
        for b in range(2):
            widths.append((f"stage{s + 1}_{b}/conv1", int(rng.integers(2, 64 * 2 ** s))))
            widths.append((f"stage{s + 1}_{b}/conv2", stage_widths[s]))
        if s:
            widths.append((f"stage{s + 1}_0/shortcut", stage_widths[s]))
    pruned = plain.clone(widths=tuple(sorted(widths)))
    variables = randomize(pruned.init(jax.random.key(seed % 1000), x), seed)
    module = torchvision.models.resnet18(num_classes=10)
    state_dict = to_torchvision("resnet18", variables)
    resize_torch_module(module, state_dict)
    module.load_state_dict(as_torch(state_dict), strict=True)
    assert rel_l2(torch_out(module.eval(), x), jax.jit(pruned.apply)(variables, x)) < 1e-5
    model, _ = from_torchvision("resnet18", state_dict, (1, SIZE, SIZE, 3))
    assert dict(model.widths) == {p: w for p, w in widths if w != dict(_nominal_widths())[p]}


def _nominal_widths():
    widths = [("stage0/conv1", 64)]
    for s in range(4):
        for b in range(2):
            widths += [(f"stage{s + 1}_{b}/conv1", 64 * 2 ** s), (f"stage{s + 1}_{b}/conv2", 64 * 2 ** s)]
        widths += [(f"stage{s + 1}_0/shortcut", 64 * 2 ** s)] if s else []
    return widths


def test_fused_dbb_network_loads_into_torchvision(x):
    """A DBB ResNet-18 fused by ``fuse_params`` -> the torchvision class (conv + an identity
    BatchNorm carrying the bias) computes the multi-branch network's outputs."""
    model = create_model("resnet18", block="dbb", num_classes=10, width=0.5)
    variables = randomize(jax.eval_shape(model.init, jax.random.key(0), x), 3)
    variables = jax.tree.map(jnp.asarray, variables)
    expected = jax.jit(model.apply)(variables, x)
    with pytest.raises(ValueError, match="fuse them first"):
        to_torchvision("resnet18", variables)
    _, deploy = fuse_params(model, variables, input_shape=x.shape)
    state_dict = to_torchvision("resnet18", deploy)
    module = torchvision.models.resnet18(num_classes=10)
    resize_torch_module(module, state_dict)
    module.load_state_dict(as_torch(state_dict), strict=True)
    assert rel_l2(torch_out(module.eval(), x), expected) < 1e-5


@pytest.mark.parametrize("block", ["dbb", "repnas"])
def test_branches_start_from_torchvision_weights(x, block):
    """torchvision ResNet-18 -> plain zoo -> DBB / RepNAS with the same function at step 0."""
    module = random_eval(torchvision.models.resnet18(num_classes=10))
    plain, variables = from_torchvision("resnet18", module.state_dict(), (1, SIZE, SIZE, 3))
    branched = plain.clone(block=block)
    branch_variables = branches_from_plain(branched, variables, input_shape=(1, SIZE, SIZE, 3))
    assert rel_l2(jax.jit(branched.apply)(branch_variables, x), torch_out(module, x)) < 1e-5


@pytest.mark.parametrize("name", ["mobilenet_v1", "repvgg_a0"])  # depthwise DBB; every RepNAS primitive
@pytest.mark.parametrize("block", ["dbb", "repnas"])
def test_branches_from_plain_compute_the_plain_function(name, block):
    """In train mode (batch statistics) and eval mode; the zero-output branches add exact zeros."""
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
    plain = create_model(name, num_classes=10, width=0.25)
    variables = randomize(jax.eval_shape(plain.init, jax.random.key(0), x), 5)
    branched = plain.clone(block=block)
    branch_variables = branches_from_plain(branched, variables, input_shape=(1, 32, 32, 3))
    for train in (False, True):
        forward = jax.jit(lambda m, v: m.apply(v, x, train=train, mutable=["batch_stats"])[0], static_argnums=0)
        assert rel_l2(forward(branched, branch_variables), forward(plain, variables)) < 1e-6
    # the branches are really there and will train: they have variables of their own
    assert len(jax.tree.leaves(branch_variables)) > len(jax.tree.leaves(variables))


def test_state_dict_of_another_architecture_is_refused():
    state_dict = torchvision.models.mobilenet_v2(num_classes=10).state_dict()
    with pytest.raises(ValueError, match="features.0.0.weight.*belongs to no layer of resnet18"):
        from_torchvision("resnet18", state_dict, (1, SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="not supported"):
        from_torchvision("vgg16", state_dict)


def test_missing_and_misshaped_tensors_are_named():
    state_dict = dict(torchvision.models.resnet18(num_classes=10).state_dict())
    del state_dict["layer2.0.bn1.running_var"]
    with pytest.raises(StateDictMismatchError, match=r"missing: batch_stats/stage2_0/conv1/bn/var \(PyTorch name layer2.0.bn1.running_var\)"):
        from_torchvision("resnet18", state_dict, (1, SIZE, SIZE, 3))
    state_dict = dict(torchvision.models.resnet18(num_classes=10).state_dict())
    state_dict["conv1.weight"] = torch.zeros(64, 4, 7, 7)
    with pytest.raises(StateDictMismatchError, match=r"misshaped: conv1.weight \(64, 4, 7, 7\)"):
        from_torchvision("resnet18", state_dict, (1, SIZE, SIZE, 3))
