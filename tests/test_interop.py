"""PyTorch state_dict import/export: names, layouts, loading, errors and round trips."""
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_jax.interop import (StateDictMismatchError, flax_to_torch, load_state_dict, split_repnas_supernet,
                             torch_to_flax)
from nas_jax.interop import names
from nas_jax.models.repvgg import RepVGG
from nas_jax.models.resnet import ResNet
from nas_jax.rep.blocks import ConvBN, DiverseBranchBlock
from helpers import rel_l2


def random_variables(abstract, seed=0):
    """Concrete variables for ``jax.eval_shape(model.init, ...)``: BN variances in [0.5, 2],
    scales in [0.5, 1.5], everything else N(0, 0.3)."""
    rng = np.random.default_rng(seed)

    def leaf(path, x):
        name = path[-1].key
        low_high = {"var": (0.5, 2.0), "scale": (0.5, 1.5)}.get(name)
        value = rng.uniform(*low_high, x.shape) if low_high else rng.normal(0.0, 0.3, x.shape)
        return jnp.asarray(value, x.dtype)

    return jax.tree_util.tree_map_with_path(leaf, abstract)


def assert_same_tree(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert x.shape == y.shape and x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def tiny_resnet(block="plain"):
    """stage0 (7x7 conv-BN, max pool), stage1_0 (8 ch), stage2_0 (16 ch, stride 2, shortcut), linear."""
    return ResNet(stage_sizes=(1, 1), width=0.125, num_classes=5, block=block)


@pytest.fixture(scope="module")
def dbb_block_golden(parity_dir):
    """A DBB block with the state_dict of a golden file (grouped, stride 2)."""
    block = DiverseBranchBlock(32, 3, 2, 1, 2)
    reference = jax.eval_shape(block.init, jax.random.key(0), jnp.zeros((1, 20, 20, 16)))
    return load_state_dict(parity_dir / "dbb_k3_s2_g2.npz"), reference


# --- names -----------------------------------------------------------------------------

def test_numbered_components_join_the_previous_one():
    assert names.torch_module_to_flax("stage1.0.conv1") == ("stage1_0", "conv1")
    assert names.torch_module_to_flax("features.12._ops.3.conv1") == ("features_12", "_ops_3", "conv1")
    assert names.torch_module_to_flax("") == ()
    assert names.flax_module_to_torch(("stage1_0", "dbb_1x1_kxk", "conv2")) == "stage1.0.dbb_1x1_kxk.conv2"
    assert names.flax_module_to_torch(("_ops_3", "conv1")) == "_ops.3.conv1"


_identifier = st.from_regex(r"_?[a-z][a-z0-9]{0,4}(_[a-z][a-z0-9]{0,3}){0,2}", fullmatch=True)
_component = st.one_of(_identifier, st.integers(0, 40).map(str))


@settings(max_examples=100, deadline=None)
@given(first=_identifier, rest=st.lists(_component, max_size=6))
def test_module_names_round_trip(first, rest):
    torch_name = ".".join([first] + rest)
    assert names.flax_module_to_torch(names.torch_module_to_flax(torch_name)) == torch_name


def test_layouts_invert_each_other():
    weight = np.arange(2 * 3 * 5 * 7, dtype=np.float32).reshape(2, 3, 5, 7)  # OIHW
    kernel = names.oihw_to_hwio(weight)
    assert kernel.shape == (5, 7, 3, 2) and kernel[4, 6, 2, 1] == weight[1, 2, 4, 6]
    np.testing.assert_array_equal(names.hwio_to_oihw(kernel), weight)
    linear = np.arange(6, dtype=np.float32).reshape(2, 3)  # [out, in]
    np.testing.assert_array_equal(names.oihw_to_hwio(linear), linear.T)


# --- loading ---------------------------------------------------------------------------

def test_npz_keeps_only_the_state_dict_keys(parity_dir):
    state_dict = load_state_dict(parity_dir / "dbb_k3_s1_g1.npz")
    archive = np.load(parity_dir / "dbb_k3_s1_g1.npz")
    sd_keys = [k for k in archive.files if k.startswith("sd/")]
    assert sorted(state_dict) == sorted(k[3:] for k in sd_keys)
    for key in sd_keys:
        assert state_dict[key[3:]].dtype == np.float32
        np.testing.assert_array_equal(state_dict[key[3:]], archive[key])


def test_pth_checkpoint_is_unwrapped(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    plain = {k: v.numpy().astype(np.float32) for k, v in model.state_dict().items()}
    wrapped = {"epoch": 7, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}
    torch.save(wrapped, tmp_path / "ckpt.pth")
    torch.save({"model": model.state_dict()}, tmp_path / "model.pt")
    for path in (tmp_path / "ckpt.pth", tmp_path / "model.pt", str(tmp_path / "ckpt.pth")):
        loaded = load_state_dict(path)
        assert sorted(loaded) == sorted(plain)
        for k in plain:
            np.testing.assert_array_equal(loaded[k], plain[k])


def test_pth_without_torch_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"not read")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match=r"pip install nas_jax\[torch\]"):
        load_state_dict(path)


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="expected .pth, .pt or .npz"):
        load_state_dict(tmp_path / "weights.h5")
    with pytest.raises(ValueError, match="'note' is not a tensor"):
        load_state_dict({"conv.weight": np.ones((1, 1, 1, 1)), "note": "text"})


# --- torch_to_flax errors --------------------------------------------------------------

def test_every_problem_is_listed_in_one_error(dbb_block_golden):
    state_dict, reference = dbb_block_golden
    state_dict = dict(state_dict)
    del state_dict["dbb_origin.bn.running_var"]
    del state_dict["dbb_avg.conv.weight"]
    state_dict["dbb_extra.weight"] = np.ones((3,), np.float32)
    state_dict["dbb_1x1.conv.weight"] = np.ones((32, 16, 1, 1), np.float32)  # groups=2 needs 8 inputs
    with pytest.raises(StateDictMismatchError) as info:
        torch_to_flax(state_dict, reference)
    err = info.value
    assert isinstance(err, ValueError)
    assert sorted(err.missing) == ["batch_stats/dbb_origin/bn/var", "params/dbb_avg/conv/kernel"]
    assert err.unexpected == ("dbb_extra.weight",)
    assert err.misshaped == (("dbb_1x1.conv.weight", (32, 16, 1, 1), "params/dbb_1x1/conv/kernel", (1, 1, 8, 32)),)
    message = str(err)
    for text in ("2 missing, 1 unexpected, 1 misshaped", "dbb_origin.bn.running_var", "dbb_avg.conv.weight",
                 "dbb_extra.weight", "(1, 1, 8, 32)"):
        assert text in message


def test_ignore_drops_only_what_it_names(dbb_block_golden):
    state_dict, reference = dbb_block_golden
    extra = {**state_dict, "alphas": np.zeros((1, 6), np.float32)}
    with pytest.raises(StateDictMismatchError, match="unexpected: alphas"):
        torch_to_flax(extra, reference)
    variables = torch_to_flax(extra, reference, ignore=("alphas",))
    assert_same_tree(variables, torch_to_flax(state_dict, reference))


def test_bn_is_told_apart_by_its_running_mean():
    reference = jax.eval_shape(ConvBN(4, 3).init, jax.random.key(0), jnp.zeros((1, 8, 8, 2)))
    state_dict = {"conv.weight": np.ones((4, 2, 3, 3)), "bn.weight": np.full(4, 2.0), "bn.bias": np.zeros(4),
                  "bn.running_mean": np.zeros(4), "bn.running_var": np.ones(4),
                  "bn.num_batches_tracked": np.array(5)}
    variables = torch_to_flax(state_dict, reference)
    np.testing.assert_array_equal(variables["params"]["bn"]["scale"], np.full(4, 2.0))
    assert variables["params"]["conv"]["kernel"].shape == (3, 3, 2, 4)
    del state_dict["bn.running_mean"]  # now `bn.weight` reads as a plain 1-D weight, still a scale
    with pytest.raises(StateDictMismatchError) as info:
        torch_to_flax(state_dict, reference)
    assert info.value.missing == ("batch_stats/bn/mean",) and not info.value.unexpected


# --- round trips -----------------------------------------------------------------------

def test_flax_to_torch_to_flax_is_identity():
    model = tiny_resnet("dbb")
    x = jnp.zeros((1, 32, 32, 3))
    variables = random_variables(jax.eval_shape(model.init, jax.random.key(0), x))
    state_dict = flax_to_torch(variables)
    assert state_dict["stage1.0.conv1.dbb_origin.conv.weight"].shape == (8, 8, 3, 3)
    assert state_dict["stage1.0.conv1.dbb_origin.bn.running_var"].shape == (8,)
    assert state_dict["linear.weight"].shape == (5, 16)
    assert_same_tree(torch_to_flax(state_dict, variables), variables)

    deploy = random_variables(jax.eval_shape(tiny_resnet("deploy").init, jax.random.key(0), x), seed=1)
    deploy_state_dict = flax_to_torch(deploy)
    kernel = np.asarray(deploy["params"]["stage2_0"]["shortcut"]["conv"]["kernel"])
    np.testing.assert_array_equal(deploy_state_dict["stage2.0.shortcut.conv.weight"], kernel.transpose(3, 2, 0, 1))
    assert {k.rsplit(".", 1)[1] for k in deploy_state_dict} == {"weight", "bias"}
    assert_same_tree(torch_to_flax(deploy_state_dict, deploy), deploy)


def test_torch_to_flax_to_torch_is_identity(parity_dir):
    state_dict = load_state_dict(parity_dir / "dbb_resnet18_w025.npz")
    model = ResNet(stage_sizes=(2, 2, 2, 2), width=0.25, num_classes=10, block="dbb")
    reference = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
    back = flax_to_torch(torch_to_flax(state_dict, reference))
    assert sorted(back) == sorted(state_dict)
    for k, v in state_dict.items():
        np.testing.assert_array_equal(back[k], v)


def test_flax_to_torch_can_return_torch_tensors():
    torch = pytest.importorskip("torch")
    params = {"params": {"linear": {"kernel": jnp.arange(6.0).reshape(3, 2), "bias": jnp.zeros(2)}}}
    state_dict = flax_to_torch(params, as_torch=True)
    assert isinstance(state_dict["linear.weight"], torch.Tensor)
    assert state_dict["linear.weight"].tolist() == [[0.0, 2.0, 4.0], [1.0, 3.0, 5.0]]


# --- RepNAS supernet -------------------------------------------------------------------

def test_split_repnas_supernet_removes_alphas_and_the_sharing_conv():
    model = RepVGG(stage_sizes=(1, 1), stage_widths=(1, 1), width=0.0625, num_classes=3, block="repnas")
    variables = random_variables(jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    state_dict = flax_to_torch(variables)
    supernet = dict(state_dict, alphas=np.arange(18, dtype=np.float32).reshape(3, 6))
    for layer in range(3):
        out = state_dict[f"features.{layer}._ops.2.conv.weight"].shape
        supernet[f"features.{layer}.conv.conv.weight"] = np.ones(out, np.float32)
        for leaf in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            supernet[f"features.{layer}.conv.bn.{leaf}"] = np.ones(out[:1], np.float32)

    with pytest.raises(StateDictMismatchError) as info:
        torch_to_flax(supernet, variables)
    assert len(info.value.unexpected) == 1 + 3 * 5  # alphas and the sharing convs; num_batches_tracked dropped
    kept, alphas = split_repnas_supernet(supernet)
    assert sorted(kept) == sorted(state_dict)
    np.testing.assert_array_equal(alphas, supernet["alphas"])
    assert_same_tree(torch_to_flax(kept, variables), variables)
    assert split_repnas_supernet(state_dict)[1] is None


def test_split_repnas_mixedop_at_the_root(parity_dir):
    state_dict = load_state_dict(parity_dir / "repnas_s1_identity.npz")
    kept, alphas = split_repnas_supernet(state_dict)
    assert alphas is None
    assert sorted(set(state_dict) - set(kept)) == sorted(
        ["conv.conv.weight"] + [f"conv.bn.{leaf}" for leaf in ("weight", "bias", "running_mean", "running_var")])
    assert "_ops.0.conv.weight" in kept and "_ops.3.conv2.conv.weight" in kept


# --- a real PyTorch model --------------------------------------------------------------

def _torch_modules(torch):
    """From-scratch PyTorch modules named like the official DBB code's plain conv-BN layers."""
    nn = torch.nn

    class ConvBNTorch(nn.Module):
        def __init__(self, cin, cout, kernel_size, stride=1, groups=1):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, groups=groups, bias=False)
            self.bn = nn.BatchNorm2d(cout)

        def forward(self, x):
            return self.bn(self.conv(x))

    class BasicBlockTorch(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = ConvBNTorch(cin, cout, 3, stride)
            self.conv2 = ConvBNTorch(cout, cout, 3)
            self.shortcut = ConvBNTorch(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

        def forward(self, x):
            return torch.relu(self.conv2(torch.relu(self.conv1(x))) + self.shortcut(x))

    class TinyResNetTorch(nn.Module):
        def __init__(self):
            super().__init__()
            self.stage0 = nn.Sequential()
            self.stage0.add_module("conv1", ConvBNTorch(3, 8, 7, 2))
            self.stage0.add_module("relu", nn.ReLU())
            self.stage0.add_module("maxpool", nn.MaxPool2d(3, 2, 1))
            self.stage1 = nn.Sequential(BasicBlockTorch(8, 8, 1))
            self.stage2 = nn.Sequential(BasicBlockTorch(8, 16, 2))
            self.linear = nn.Linear(16, 5)

        def forward(self, x):
            x = self.stage2(self.stage1(self.stage0(x)))
            return self.linear(x.mean(dim=(2, 3)))

    return ConvBNTorch, TinyResNetTorch


def _randomize_batch_norms(torch, module):
    generator = torch.Generator().manual_seed(0)
    for bn in (m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        c = bn.num_features
        bn.weight.data = torch.rand(c, generator=generator) + 0.5
        bn.bias.data = torch.randn(c, generator=generator) * 0.3
        bn.running_mean = torch.randn(c, generator=generator) * 0.3
        bn.running_var = torch.rand(c, generator=generator) * 1.5 + 0.5
    return module.eval()


@pytest.mark.parametrize("which", ["conv_bn", "tiny_resnet"])
def test_a_saved_torch_model_gives_the_same_outputs(which, tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ConvBNTorch, TinyResNetTorch = _torch_modules(torch)
    if which == "conv_bn":
        torch_model, flax_model = ConvBNTorch(4, 6, 3, stride=2, groups=2), ConvBN(6, 3, 2, groups=2)
        x = torch.randn(2, 4, 11, 11)
    else:
        torch_model, flax_model = TinyResNetTorch(), tiny_resnet()
        x = torch.randn(2, 3, 32, 32)
    _randomize_batch_norms(torch, torch_model)
    state_dict = torch_model.state_dict()
    if which == "tiny_resnet":  # as a training script saves it: wrapped, from nn.DataParallel
        state_dict = {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in state_dict.items()}}
    torch.save(state_dict, tmp_path / "weights.pth")
    with torch.no_grad():
        expected = torch_model(x).numpy()

    x_nhwc = jnp.asarray(x.numpy().transpose(0, 2, 3, 1))
    reference = jax.eval_shape(flax_model.init, jax.random.key(0), x_nhwc)
    variables = torch_to_flax(tmp_path / "weights.pth", reference)
    with jax.default_matmul_precision("highest"):
        y = np.asarray(flax_model.apply(variables, x_nhwc))
    if y.ndim == 4:
        y = y.transpose(0, 3, 1, 2)
    assert y.shape == expected.shape
    assert rel_l2(y, expected) < 1e-5
