"""RepNAS search pieces: the budgeted top-k, straight-through gradients, dynamic masks,
fusion of fixed sub-networks on every backbone, and errors for bad settings."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from helpers import randomize
from nas_jax.common import RUN_ONCE_COMPILER_OPTIONS
from nas_jax.models import create_model
from nas_jax.rep.fuse import deploy_form, fuse_params
from nas_jax.repnas.searchable import OUTPUT_SCALES, branch_weights_collection, find_searchable_layers, static_branch_mask
from nas_jax.repnas.masks import BranchBudget, gumbel_rank, kept_mask, straight_through
from nas_jax.repnas.task import (RepNASTask, SearchSchedule, SearchStability, alpha_gradient_t, alpha_optimizer,
                                resolve_branch_compute)
from repnas_helpers import TinyNet


def _run_once(fn, *args):
    """``fn(*args)`` compiled without backend optimisation: these programs run once."""
    return jax.jit(fn).lower(*args).compile(compiler_options=RUN_ONCE_COMPILER_OPTIONS)(*args)


def _task(model=None, kept_ratio=0.5, branch_compute="cond", stability=SearchStability.paper(), **budget):
    model = model or TinyNet()
    layers = find_searchable_layers(model, (1, 16, 16, 3))
    return RepNASTask(model, layers, BranchBudget(len(layers), kept_ratio, **budget), SearchSchedule(2, 2, 8),
                      alpha_optimizer(), branch_compute, stability=stability)


def test_layers_are_found_in_network_order_with_shapes():
    layers = find_searchable_layers(TinyNet(), (1, 16, 16, 3))
    assert [layer.path for layer in layers] == ["conv1", "conv2", "conv3"]
    assert [layer.has_identity for layer in layers] == [False, True, False]
    assert [(layer.strides, layer.input_hw, layer.output_hw) for layer in layers] == [
        (2, (16, 16), (8, 8)), (1, (8, 8), (8, 8)), (1, (8, 8), (8, 8))]
    resnet = find_searchable_layers(create_model("resnet18", block="repnas", width=0.125, num_classes=10),
                                    (1, 32, 32, 3))
    assert len(resnet) == 16 and resnet[0].path == "stage1_0/conv1" and resnet[-1].path == "stage4_1/conv2"


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ratio", [0.2, 0.34, 0.5, 1.0])
def test_top_k_keeps_exactly_k_and_the_best(seed, ratio):
    layers = 7
    budget = BranchBudget(layers, ratio)
    rank = jax.random.normal(jax.random.key(seed), (layers, 6))
    mask = np.asarray(kept_mask(rank, budget))
    assert set(np.unique(mask)) <= {0.0, 1.0}
    assert mask.sum() == int(layers * 6 * ratio) == budget.k
    kept, dropped = np.asarray(rank)[mask > 0], np.asarray(rank)[mask == 0]
    assert dropped.size == 0 or kept.min() > dropped.max()


@pytest.mark.parametrize("seed", range(5))
def test_per_layer_cap_is_the_greedy_top_k_under_the_cap(seed):
    budget = BranchBudget(6, 0.34, per_layer_cap=2)
    rank = np.asarray(jax.random.normal(jax.random.key(seed), (6, 6)))
    mask = np.asarray(kept_mask(jnp.asarray(rank), budget))
    expected, per_layer = np.zeros_like(mask), np.zeros(6, int)
    for flat in np.argsort(-rank, axis=None):
        layer = flat // 6
        if expected.sum() < budget.k and per_layer[layer] < 2:
            expected.flat[flat], per_layer[layer] = 1, per_layer[layer] + 1
    np.testing.assert_array_equal(mask, expected)
    assert mask.sum() == budget.k and mask.sum(axis=1).max() <= 2


@pytest.mark.parametrize("seed", range(5))
def test_cost_budget_keeps_the_best_ranked_prefix_within_budget(seed):
    costs = np.random.default_rng(seed).uniform(1, 10, (5, 6))
    budget = BranchBudget(5, 0.4, kind="cost", costs=costs)
    rank = np.asarray(jax.random.normal(jax.random.key(seed), (5, 6)))
    mask = np.asarray(kept_mask(jnp.asarray(rank), budget))
    order = np.argsort(-rank, axis=None)
    n = int(np.sum(np.cumsum(costs.flat[order]) <= budget.cost_limit))
    expected = np.zeros(30)
    expected[order[:n]] = 1
    np.testing.assert_array_equal(mask.reshape(-1), expected)
    assert costs[mask > 0].sum() <= budget.cost_limit < costs[mask > 0].sum() + costs.flat[order[n]]


def test_gumbel_noise_at_training_only_and_straight_through_value():
    alphas = jnp.linspace(-1, 1, 12).reshape(2, 6)
    assert gumbel_rank(alphas, None) is alphas
    noisy = gumbel_rank(alphas, jax.random.key(0))
    assert not np.allclose(noisy, alphas)
    diff = np.asarray(gumbel_rank(jnp.zeros((200, 6)), jax.random.key(1))).reshape(-1)
    assert abs(diff.mean()) < 0.1 and abs(diff.std() - np.pi / np.sqrt(3)) < 0.1  # logistic(0, 1)
    mask = kept_mask(noisy, BranchBudget(2, 0.5))
    np.testing.assert_allclose(straight_through(noisy, mask), mask, rtol=0, atol=2 ** -23)  # float32 m + s - s
    grad = jax.grad(lambda a: jnp.sum(straight_through(a, mask) * jnp.arange(12.0).reshape(2, 6)))(noisy)
    s = jax.nn.sigmoid(noisy)
    np.testing.assert_allclose(grad, s * (1 - s) * jnp.arange(12.0).reshape(2, 6), rtol=1e-6)


@pytest.mark.parametrize("branch_compute", ["cond", "dense"])
def test_straight_through_gradients_reach_the_kept_alphas_only(branch_compute):
    task = _task(branch_compute=branch_compute)
    batch = {"image": jax.random.normal(jax.random.key(3), (4, 16, 16, 3)), "label": jnp.arange(4) % 10}
    v = _run_once(lambda key: task.init(key, batch), jax.random.key(0))
    extra = {**v["extra"], "alphas": jax.random.normal(jax.random.key(4), (3, 6))}
    rng = jax.random.key(7)
    mask, _ = task.step_sample(extra, rng)

    def loss(alphas):
        return task.loss(v["params"], {**extra, "alphas": alphas}, v["batch_stats"], batch, rng, True)[0]

    grad_alphas = jax.jit(jax.grad(loss))(extra["alphas"])
    np.testing.assert_array_equal(np.asarray(grad_alphas) != 0, np.asarray(mask) > 0)
    # update_extra, given the loss's key, counts that same mask (a search step: step >= random_steps)
    updated = jax.jit(task.update_extra)(extra, {"alphas": grad_alphas}, jnp.asarray(2), rng)
    np.testing.assert_array_equal(updated["kept_steps"], mask)
    np.testing.assert_array_equal(updated["alpha_grad_sum"], grad_alphas)
    np.testing.assert_allclose(updated["alpha_grad_sq_sum"], np.asarray(grad_alphas) ** 2, rtol=1e-6)


def test_a_kept_alphas_gradient_is_its_branch_output_scale_gradient():
    """Why the alphas learn little: a kept branch's alpha gradient is sigmoid'(rank) times
    sum(gamma * dL/dgamma + beta * dL/dbeta) of the branch's last BatchNorm, the gradient
    the weights' own optimiser already follows (and drives to zero mean)."""
    task = _task(branch_compute="dense")
    batch = {"image": jax.random.normal(jax.random.key(3), (4, 16, 16, 3)), "label": jnp.arange(4) % 10}
    v = _run_once(lambda key: task.init(key, batch), jax.random.key(0))
    params = randomize(v["params"], seed=5)
    extra = {**v["extra"], "alphas": jax.random.normal(jax.random.key(4), (3, 6))}
    rng = jax.random.key(7)
    mask, _ = task.step_sample(extra, rng)

    def loss(params, alphas):
        return task.loss(params, {**extra, "alphas": alphas}, v["batch_stats"], batch, rng, True)[0]

    with jax.default_matmul_precision("highest"):
        grad_params, grad_alphas = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, extra["alphas"])
    rank = gumbel_rank(extra["alphas"], rng)  # the paper's sampling: fresh noise from the step's key
    slope = jax.nn.sigmoid(rank) * (1 - jax.nn.sigmoid(rank))
    checked = 0
    for row, layer in enumerate(task.layers):
        for column, bn in enumerate(OUTPUT_SCALES["exact"]):
            if not mask[row, column]:
                continue
            p, g = (tree[layer.path] for tree in (params, grad_params))
            for part in bn.split("/"):
                p, g = p[part], g[part]
            scale_gradient = float(jnp.sum(p["scale"] * g["scale"] + p["bias"] * g["bias"]))
            np.testing.assert_allclose(grad_alphas[row, column], slope[row, column] * scale_gradient,
                                       rtol=1e-4, atol=1e-7)
            checked += 1
    assert checked == int(mask.sum()) > 3


def test_alpha_gradient_t_is_the_one_sample_t_statistic_over_kept_steps():
    grads = np.random.default_rng(0).normal(0.3, 1.0, (9, 2, 6)).astype(np.float32)
    kept = np.ones((9, 2, 6), np.float32)
    kept[:, 1, 3] = 0  # never kept: no statistic
    kept[:3, 0, 0] = 0  # kept in 6 of 9 steps: the statistic of those 6
    extra = {"kept_steps": kept.sum(0), "alpha_grad_sum": (kept * grads).sum(0),
             "alpha_grad_sq_sum": (kept * grads ** 2).sum(0)}
    t = alpha_gradient_t(extra)
    assert np.isnan(t[1, 3]) and np.isfinite(np.delete(t.reshape(-1), 9)).all()
    np.testing.assert_allclose(t[0, 0], stats.ttest_1samp(grads[3:, 0, 0], 0.0).statistic, rtol=1e-4)
    np.testing.assert_allclose(t[1, 5], stats.ttest_1samp(grads[:, 1, 5], 0.0).statistic, rtol=1e-4)


def test_dynamic_mask_equals_static_mask_and_dense_including_empty_layers():
    """The cond path, the dense path and a static branch_mask give the same outputs and
    BN updates; an empty layer without identity computes conv3x3 unweighted."""
    cond, dense = _task(branch_compute="cond"), _task(branch_compute="dense")
    x = jax.random.normal(jax.random.key(3), (4, 16, 16, 3))
    variables = randomize(jax.eval_shape(cond.model.init, jax.random.key(0), x))
    mask = jnp.asarray([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 1, 0]], jnp.float32)  # conv1: fallback
    weights = jnp.asarray(np.random.default_rng(0).uniform(0.2, 1.0, (3, 6)), jnp.float32)
    static = cond.model.clone(branch_mask=static_branch_mask(cond.paths, mask))
    outs = []
    for model, bw in ((cond.model, cond.branch_weights(mask, weights)),
                      (dense.model, dense.branch_weights(mask, weights)),
                      (static, branch_weights_collection(cond.paths, weights))):
        outs.append(jax.jit(lambda v, b, m=model: m.apply({**v, "branch_weights": b}, x, train=True,
                                                          mutable=["batch_stats"]))(variables, bw))
    for y, updates in outs[1:]:
        np.testing.assert_allclose(y, outs[0][0], rtol=1e-5, atol=1e-5)
    # cond and static do not touch a masked branch's statistics; dense does
    for a, b in zip(jax.tree.leaves(outs[0][1]), jax.tree.leaves(outs[2][1])):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    untouched = variables["batch_stats"]["conv3"]["_ops_2"]["bn"]["mean"]
    np.testing.assert_array_equal(outs[0][1]["batch_stats"]["conv3"]["_ops_2"]["bn"]["mean"], untouched)


BACKBONES = [("repvgg_a0", 0.125), ("resnet18", 0.125), ("mobilenet_v1", 0.125)]


@pytest.mark.parametrize("name,width", BACKBONES)
def test_fused_network_equals_the_fixed_supernet_in_eval_mode(name, width):
    model = create_model(name, block="repnas", width=width, num_classes=10)
    layers = find_searchable_layers(model, (1, 32, 32, 3))
    assert any(layer.strides == 2 for layer in layers) and any(layer.has_identity for layer in layers)
    budget = BranchBudget(len(layers), 0.34)
    mask = np.asarray(kept_mask(jax.random.normal(jax.random.key(1), (len(layers), 6)), budget)) > 0
    mask[0] = False  # an empty stride-2 layer: the conv3x3 fallback
    fixed = model.clone(branch_mask=static_branch_mask([layer.path for layer in layers], mask))
    x = jax.random.normal(jax.random.key(2), (2, 32, 32, 3))
    variables = randomize(jax.eval_shape(model.init, jax.random.key(0), x), seed=1, scale=0.2)
    deploy = deploy_form(fixed)
    deploy_variables = _run_once(lambda v: fuse_params(fixed, v, input_shape=(1, 32, 32, 3))[1], variables)
    supernet_out = _run_once(lambda v: fixed.apply(v, x), variables)
    fused_out = _run_once(lambda v: deploy.apply(v, x), deploy_variables)
    scale = float(np.abs(supernet_out).max())
    assert scale > 1e-3
    np.testing.assert_allclose(fused_out, supernet_out, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("ratio", [0.0, -0.1, 1.5])
def test_kept_ratio_outside_zero_one_is_an_error(ratio):
    with pytest.raises(ValueError, match=r"kept_ratio must be in \(0, 1\]"):
        BranchBudget(4, ratio)


def test_budget_below_one_branch_per_layer_is_an_error():
    with pytest.raises(ValueError, match="less than one per layer"):
        BranchBudget(10, 0.16)  # k = int(60 * 0.16) = 9 < 10
    BranchBudget(10, 1 / 6 + 1e-9)
    with pytest.raises(ValueError, match="less than one branch per layer"):
        BranchBudget(2, 0.05, kind="cost", costs=np.ones((2, 6)))
    with pytest.raises(ValueError, match="do not fit under per_layer_cap"):
        BranchBudget(4, 0.5, per_layer_cap=2)  # k = 12 > 4 * 2


def test_backbone_without_3x3_layers_is_an_error():
    with pytest.raises(ValueError, match="no RepNAS searchable layer"):
        find_searchable_layers(TinyNet(kernel_size=1), (1, 16, 16, 3))
    with pytest.raises(ValueError, match="no RepNAS searchable layer"):
        find_searchable_layers(create_model("resnet18", block="plain", width=0.125), (1, 32, 32, 3))


def test_schedule_needs_a_fixed_phase():
    with pytest.raises(ValueError, match="needs at least one step"):
        SearchSchedule(4, 4, 8)
    assert [SearchSchedule(1, 2, 4).phase(s) for s in range(4)] == ["random", "search", "search", "fixed"]


def test_branch_compute_auto_picks_the_form_measured_faster_on_the_backend():
    assert jax.default_backend() == "cpu" and resolve_branch_compute("auto") == "dense"
    assert resolve_branch_compute("cond") == "cond"
    with pytest.raises(ValueError, match="unknown branch_compute 'fast'"):
        resolve_branch_compute("fast")


def test_each_branch_noise_is_redrawn_with_probability_one_over_its_lifetime():
    """With ``noise_lifetime=3`` the step's mask is the top-k of the alphas plus the carried
    noise, whatever the step's own key; each step every noise entry is either kept or
    drawn anew, about a third of them (so the mask moves a few branches at a time)."""
    task = _task(branch_compute="dense", stability=SearchStability(noise_lifetime=3, noise_final=1.0,
                                                                  branch_scale_init=1.0))
    batch = {"image": jnp.zeros((2, 16, 16, 3)), "label": jnp.zeros((2,), jnp.int32)}
    extra = _run_once(lambda key: task.init(key, batch), jax.random.key(0))["extra"]
    update = jax.jit(task.update_extra)
    grads = {"alphas": jnp.zeros_like(extra["alphas"])}
    redrawn, steps = 0, 60
    for step in range(steps):
        rng = jax.random.fold_in(jax.random.key(1), step)
        mask, _ = task.step_sample(extra, rng)
        np.testing.assert_array_equal(mask, kept_mask(extra["alphas"] + extra["noise"], task.budget))
        np.testing.assert_array_equal(mask, task.step_sample(extra, jax.random.key(99))[0])
        new = update(extra, grads, jnp.asarray(step), rng)
        redrawn += int(np.sum(np.asarray(new["noise"]) != np.asarray(extra["noise"])))
        extra = new
    expected = steps * extra["alphas"].size / 3  # 360; binomial std 11.5
    assert abs(redrawn - expected) < 5 * np.sqrt(expected * 2 / 3), redrawn


def test_the_noise_scale_falls_linearly_over_the_search_phase():
    task = _task(stability=SearchStability(noise_lifetime=1, noise_final=0.1, branch_scale_init=1.0))
    # SearchSchedule(2, 2, 8): two search steps
    np.testing.assert_allclose([task.noise_scale(jnp.float32(s)) for s in (0, 1, 2, 5)], [1.0, 0.55, 0.1, 0.1],
                               rtol=1e-6)
    assert _task().noise_scale(jnp.float32(1)) == 1.0  # the paper's: never annealed


def test_branches_start_silent_in_the_exact_block_and_at_full_scale_in_the_online_one():
    assert (SearchStability().scale_init(online=False), SearchStability().scale_init(online=True)) == (0.0, 1.0)
    assert SearchStability(branch_scale_init=0.5).scale_init(online=True) == 0.5
    assert SearchStability.paper().scale_init(online=False) == 1.0
    with pytest.raises(ValueError, match="noise_lifetime"):
        SearchStability(noise_lifetime=0)


@pytest.mark.parametrize("block", ["repnas", "repnas_online"])
def test_silent_branches_make_masks_agree_where_a_layer_has_identity(block):
    """``branch_scale_init=0``: the primitives of layers with an identity branch start at
    scale 0, so two masks that differ only there give the same logits; with the paper's 1
    they differ. Layers without one are untouched (silenced, they would output 0 and a
    ReLU after them would pass no gradient back)."""
    batch = {"image": jax.random.normal(jax.random.key(3), (4, 16, 16, 3)), "label": jnp.arange(4)}
    other_rows = [[1, 0, 1, 0, 0, 0], None, [0, 1, 0, 0, 1, 0]]  # conv1, conv2 (identity), conv3
    masks = [jnp.asarray([row or conv2 for row in other_rows], jnp.float32)
             for conv2 in ([1, 1, 0, 0, 0, 0], [0, 0, 0, 1, 1, 1])]
    logits, params = {}, {}
    for scale in (0.0, 1.0):
        task = _task(TinyNet(block=block), branch_compute="dense",
                     stability=SearchStability(noise_lifetime=1, noise_final=1.0, branch_scale_init=scale))
        v = _run_once(lambda key: task.init(key, batch), jax.random.key(0))
        params[scale] = dict(jax.tree_util.tree_flatten_with_path(v["params"])[0])
        logits[scale] = [task.model.apply({"params": v["params"], "batch_stats": v["batch_stats"],
                                           "branch_weights": task.branch_weights(mask, mask)},
                                          batch["image"], train=True, mutable=["batch_stats"])[0] for mask in masks]
    assert [layer.path for layer in task.layers if layer.has_identity] == ["conv2"]
    changed = [k for k in params[1.0] if not np.array_equal(params[1.0][k], params[0.0][k])]
    assert len(changed) == 6 and all("conv2" in jax.tree_util.keystr(k) and "scale" in jax.tree_util.keystr(k)
                                     and not np.any(params[0.0][k]) for k in changed)
    np.testing.assert_allclose(logits[0.0][0], logits[0.0][1], rtol=1e-6, atol=1e-6)
    assert not np.allclose(logits[1.0][0], logits[1.0][1], atol=1e-3)
