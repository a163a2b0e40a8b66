"""Conv-BatchNorm folding of models without nas_jax blocks (``fuse_params`` on a user's or a
published model): the folded network computes the trained one in float64, over kernel
sizes, strides, groups, conv biases and BatchNorm affine flags; a conv whose output is
read elsewhere too, a BatchNorm before its conv and a module called twice stay as they are."""
import flax.linen as nn
import jax
import pytest
from hypothesis import given, settings, strategies as st

from nas_jax.rep.fold_batch_norms import FoldedBatchNorms, conv_batch_norm_pairs
from nas_jax.rep.fuse import deploy_form, fuse_params
from helpers import as_float64, random_variables, rel_l2
import user_models

SIZE = 12


class ConvBNStack(nn.Module):
    kernel: int
    stride: int
    groups: int
    conv_bias: bool
    use_scale: bool
    use_bias: bool

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = dict(use_running_average=not train, use_scale=self.use_scale, use_bias=self.use_bias)
        x = nn.relu(nn.BatchNorm(**bn)(nn.Conv(8, (3, 3), use_bias=self.conv_bias)(x)))
        x = nn.Conv(8, (self.kernel, self.kernel), strides=self.stride, feature_group_count=self.groups,
                    use_bias=self.conv_bias)(x)
        x = nn.relu(nn.BatchNorm(**bn)(x))
        return nn.Dense(10)(x.mean((1, 2)))


class NotFoldable(nn.Module):
    """``tapped``'s output also feeds a residual; ``pre`` is normalised before its conv;
    ``shared`` and its BatchNorm run twice. Only ``plain`` + ``bn_plain`` fold."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        bn = lambda name: nn.BatchNorm(use_running_average=not train, name=name)  # noqa: E731
        y = nn.Conv(8, (3, 3), name="tapped")(x)
        x = nn.relu(bn("bn_tapped")(y)) + y
        x = nn.Conv(8, (3, 3), name="pre")(nn.relu(bn("bn_pre")(x)))
        shared, bn_shared = nn.Conv(8, (3, 3), name="shared"), bn("bn_shared")
        x = bn_shared(shared(bn_shared(shared(x))))
        x = nn.relu(bn("bn_plain")(nn.Conv(8, (3, 3), name="plain")(x)))
        return nn.Dense(10)(x.mean((1, 2)))


def _fused_vs_trained(model, seed=1):
    x = jax.random.normal(jax.random.key(seed), (2, SIZE, SIZE, 3))
    with jax.enable_x64(True):
        variables = as_float64(random_variables(model, x, seed=seed))
        deploy_model, deploy = fuse_params(model, variables, input_shape=(1, SIZE, SIZE, 3))
        fused = deploy_model.apply(deploy, as_float64(x), train=False)
        trained = model.apply(variables, as_float64(x), train=False)
    return deploy_model, deploy, fused, trained


@settings(max_examples=12, deadline=None)
@given(kernel=st.sampled_from([1, 3, 5]), stride=st.sampled_from([1, 2]), groups=st.sampled_from([1, 2, 8]),
       conv_bias=st.booleans(), use_scale=st.booleans(), use_bias=st.booleans())
def test_folded_conv_batch_norms_compute_the_trained_network(kernel, stride, groups, conv_bias, use_scale, use_bias):
    model = ConvBNStack(kernel, stride, groups, conv_bias, use_scale, use_bias)
    deploy_model, deploy, fused, trained = _fused_vs_trained(model)
    assert isinstance(deploy_model, FoldedBatchNorms) and len(deploy_model.folded) == 2
    assert "batch_stats" not in deploy and all("scale" not in deploy["params"][n] for n in deploy_model.folded)
    assert rel_l2(fused, trained) < 1e-12


def test_only_a_conv_read_by_its_batch_norm_alone_folds():
    model = NotFoldable()
    x = jax.random.normal(jax.random.key(0), (2, SIZE, SIZE, 3))
    assert conv_batch_norm_pairs(model, random_variables(model, x), (1, SIZE, SIZE, 3)) == {
        ("bn_plain",): (("plain",), 1e-5)}
    deploy_model, deploy, fused, trained = _fused_vs_trained(model)
    assert deploy_model.folded == ("bn_plain",) and set(deploy["batch_stats"]) == {"bn_tapped", "bn_pre", "bn_shared"}
    assert rel_l2(fused, trained) < 1e-12


def test_user_models_fold_and_one_with_nothing_to_fold_says_so():
    for function in (user_models.train_by_default, user_models.tiny_unet, user_models.flatten_mlp):
        model = function(10)
        deploy_model, _, fused, trained = _fused_vs_trained(model)
        assert deploy_model.folded and rel_l2(fused, trained) < 1e-12, function.__name__
        shapes = jax.eval_shape(lambda x: model.init(jax.random.key(0), x, train=False), jax.numpy.zeros((1, SIZE, SIZE, 3)))
        assert deploy_form(model, shapes, input_shape=(1, SIZE, SIZE, 3)) == deploy_model  # from shapes alone
    model = user_models.dense_block_net(10)  # pre-activation: every BatchNorm comes before its conv
    with pytest.raises(ValueError, match="no nn.Conv whose output only a BatchNorm reads.*nothing to fuse"):
        fuse_params(model, random_variables(model, jax.numpy.zeros((1, SIZE, SIZE, 3))), input_shape=(1, SIZE, SIZE, 3))
    with pytest.raises(ValueError, match="no nas_jax blocks.*pass them"):
        deploy_form(model)
