"""Width search (nas_jax.pruning.search): exact vectorised costs, budgets, batched ==
one-at-a-time evaluation, every searcher within budget, reproducible and resumable
searches. A tiny ResNet-18 PruningNet with random generator weights on digits."""
import json

import jax
import numpy as np
import pytest

from nas_jax.data import create_pipeline
from nas_jax.pruning.cost import network_cost
from nas_jax.pruning.search.config import default_config
from nas_jax.pruning.search.driver import run_search
from nas_jax.pruning.search.evaluate import CandidateEvaluator, stack_batches
from nas_jax.pruning.search.latency import LatencyTable, cached_latency_table, measure_latency_table
from nas_jax.pruning.search.searchers import METHODS
from nas_jax.pruning.search.context import make_searcher
from nas_jax.pruning.search.space import Budget, SearchSpace
from nas_jax.pruning.task import PruningTask, evaluate_configuration
from nas_jax.pruning.widths import WidthGrid, full_channels
from nas_jax.models.network import ZooSpec

TASK = PruningTask(ZooSpec("resnet18", 10, 0.125, 32), WidthGrid.arange(0.25, 1.0, 0.25), gcn_features=8,
                   generator_hidden=4)
CHUNK = 2  # unrolled on the CPU: compile time grows with it


@pytest.fixture(scope="module")
def params():
    return jax.jit(TASK.init)(jax.random.key(0), None)["params"]


@pytest.fixture(scope="module")
def data():
    train = create_pipeline("digits", "train")
    calibration = np.stack([b["image"] for b, _ in zip(train.train_batches(16, 1), range(2))])
    holdout = list(create_pipeline("digits", "validation").eval_batches(64))[:2]
    return calibration, holdout


@pytest.fixture(scope="module")
def evaluator(params, data):
    calibration, holdout = data
    return CandidateEvaluator(TASK, params, calibration, stack_batches(holdout), CHUNK)


def space(budget="flops=0.4", mode="hard"):
    return SearchSpace(TASK.graph, TASK.grid, Budget.parse(budget, mode))


def search_config(**changes):
    s = default_config().search
    s.evaluations, s.checkpoint_every = 12, 1
    s.random.batch, s.rl.batch = 4, 4
    s.evolution.update(population=6, top_k=3, mutations=3, crossovers=3)
    s.update(changes)
    return s


def search(method, directory, evaluator, params, s=None, budget="flops=0.4", log=None, latency=None):
    s = s or search_config()
    sp = SearchSpace(TASK.graph, TASK.grid, Budget.parse(budget, s.budget_mode, s.penalty), latency)
    settings = {"method": method, "budget": budget, "seed": s.seed, "search": s.to_dict()}
    best = run_search(sp, evaluator, make_searcher(method, sp, s, TASK, params), str(directory), settings,
                      s.evaluations, s.checkpoint_every, log)
    return sp, best


def test_costs_equal_network_cost():
    sp = space()
    choices = np.random.default_rng(0).integers(0, sp.num_choices, (5, sp.num_groups))
    costs = sp.costs(choices)
    for k, channels in enumerate(sp.channels(choices)):
        assert network_cost(TASK.graph, channels) == {m: int(costs[m][k]) for m in ("flops", "params")}


def test_clamp_fits_and_keeps_what_fits():
    sp = space("params=0.3")
    choices = np.random.default_rng(1).integers(0, sp.num_choices, (50, sp.num_groups))
    clamped = sp.clamp(choices)
    assert sp.fits(clamped).all() and (clamped <= choices).all()
    fitting = sp.fits(choices)
    np.testing.assert_array_equal(clamped[fitting], choices[fitting])


def test_impossible_budget_is_a_clear_error():
    with pytest.raises(ValueError, match="impossible.*smallest configuration"):
        space("flops=0.01")
    for text in ("flops", "energy=0.5", "flops=1.5", "flops=half"):
        with pytest.raises(ValueError):
            Budget.parse(text)
    with pytest.raises(ValueError, match="latency budget needs a latency table"):
        space("latency=0.5")


def test_batched_evaluation_equals_one_at_a_time(params, data, evaluator):
    sp = space()
    channels = sp.channels(sp.random(np.random.default_rng(2), 3))
    batched = evaluator(channels)
    # exact: a candidate's accuracy does not depend on the candidates evaluated with it
    np.testing.assert_array_equal(batched, np.concatenate([evaluator(c[None]) for c in channels]))
    # the vmapped program (grouped convs), the chunk-1 program and part 1's evaluation loop
    # sum in other orders; with random weights (chance-level logits, near ties) a few of the 128
    # held-out examples may flip
    one_at_a_time = CandidateEvaluator(TASK, params, data[0], stack_batches(data[1]), chunk=1)
    np.testing.assert_allclose(batched, one_at_a_time(channels), atol=3.01 / 128)
    side_by_side = CandidateEvaluator(TASK, params, data[0], stack_batches(data[1]), CHUNK, vmap_width=CHUNK)
    assert side_by_side.vmap_width == CHUNK
    np.testing.assert_allclose(side_by_side(channels), batched, atol=3.01 / 128)
    reference = evaluate_configuration(TASK, params, channels[0] / full_channels(TASK.graph), list(data[0]), data[1])
    np.testing.assert_allclose(batched[0], reference, atol=3.01 / 128)


@pytest.mark.parametrize("method", METHODS)
def test_every_searcher_respects_its_budget(tmp_path, evaluator, params, method):
    for budget in ("flops=0.4", "params=0.5"):
        sp, best = search(method, tmp_path / budget, evaluator, params, budget=budget)
        metric, fraction = budget.split("=")
        assert best[f"{metric}_ratio"] <= float(fraction) + 1e-9
        assert sp.fits(np.asarray(
            [[TASK.grid.ratios.index(best["widths"][TASK.graph.groups[g].name]) for g in sp.prunable]])).all()
        assert best["evaluations"] == (1 if method == "uniform" else 12)


def test_penalty_budget_scores_over_budget_candidates_lower():
    """Score = accuracy - penalty * relative excess over the budget; a hard budget scores
    the accuracy alone (it clamps instead)."""
    sp = SearchSpace(TASK.graph, TASK.grid, Budget.parse("flops=0.4", "penalty", 5.0))
    full = np.full((1, sp.num_groups), sp.num_choices - 1)
    small = np.zeros((1, sp.num_groups), np.int64)
    choices = np.concatenate([full, small])
    assert not sp.fits(full)[0] and sp.fits(small)[0]
    scores = sp.score([0.9, 0.9], choices)
    excess = sp.costs(full)["flops"][0] / sp.limit - 1.0
    np.testing.assert_allclose(scores, [0.9 - 5.0 * excess, 0.9])
    np.testing.assert_array_equal(space(mode="hard").score([0.9, 0.9], choices), [0.9, 0.9])
    np.testing.assert_array_equal(sp.constrain(full), full)  # left as proposed


def test_penalty_search_explores_beyond_the_budget_and_returns_one_within(tmp_path, evaluator, params):
    sp, best = search("random", tmp_path, evaluator, params, search_config(budget_mode="penalty", penalty=5.0))
    assert sp.budget.penalty == 5.0
    proposed = json.loads((tmp_path / "state.json").read_text())["history"]["columns"]["flops_ratio"]
    assert max(proposed) > 0.4  # over-budget candidates were evaluated (a hard budget clamps them)
    assert best["flops_ratio"] <= 0.4


@pytest.mark.parametrize("method", ["rl", "evolution"])
def test_search_is_reproducible_for_a_seed(tmp_path, evaluator, params, method):
    _, a = search(method, tmp_path / "a", evaluator, params)
    _, b = search(method, tmp_path / "b", evaluator, params)
    _, c = search(method, tmp_path / "c", evaluator, params, search_config(seed=1))
    same = ("widths", "val_accuracy", "flops_ratio")
    assert {k: a[k] for k in same} == {k: b[k] for k in same}
    assert (tmp_path / "a" / "state.json").read_text().split('"wall_s"')[0] == \
        (tmp_path / "b" / "state.json").read_text().split('"wall_s"')[0]
    assert (tmp_path / "a" / "state.json").read_text() != (tmp_path / "c" / "state.json").read_text()


class Killed(Exception):
    pass


@pytest.mark.parametrize("method", ["rl", "evolution"])
def test_killed_search_resumes_to_the_same_result(tmp_path, evaluator, params, method):
    s = search_config(checkpoint_every=2, evaluations=24)

    def kill_at_iteration_3(iteration, history):
        if iteration == 3:
            raise Killed

    _, uninterrupted = search(method, tmp_path / "whole", evaluator, params, s)
    with pytest.raises(Killed):
        search(method, tmp_path / "killed", evaluator, params, s, log=kill_at_iteration_3)
    _, resumed = search(method, tmp_path / "killed", evaluator, params, s)
    keys = ("widths", "val_accuracy", "flops_ratio", "evaluations")
    assert {k: resumed[k] for k in keys} == {k: uninterrupted[k] for k in keys}
    with pytest.raises(ValueError, match="another search"):
        search(method, tmp_path / "killed", evaluator, params, search_config(seed=3))


def test_ppo_search_stays_within_budget(tmp_path, evaluator, params):
    s = search_config()
    s.rl.algorithm, s.rl.ppo_epochs = "ppo", 2
    _, best = search("rl", tmp_path, evaluator, params, s)
    assert best["flops_ratio"] <= 0.4 and best["evaluations"] == 12


@pytest.fixture(scope="module")
def latency_table():
    return measure_latency_table(TASK.graph, TASK.grid, batch=2, samples=2, repeats=3)


def test_latency_table_covers_every_layer_and_interpolates(latency_table):
    table = latency_table
    assert len(table.seconds) == len(TASK.graph.layers)
    for layer, xs, ys, seconds in zip(TASK.graph.layers, table.in_widths, table.out_widths, table.seconds):
        assert seconds.shape == (len(xs), len(ys)) and (seconds > 0).all()
        assert (np.diff(seconds, axis=0) >= 0).all() and (np.diff(seconds, axis=1) >= 0).all()
        assert ys[-1] == layer.out_channels and xs[-1] == layer.in_channels
        # at the sampled widths the interpolation returns the table itself
        grid_in, grid_out = np.meshgrid(xs, ys, indexing="ij")
        index = TASK.graph.layers.index(layer)
        c_in = np.zeros((grid_in.size, len(TASK.graph.layers)), np.int64)
        c_out = np.zeros_like(c_in)
        c_in[:, index], c_out[:, index] = grid_in.ravel(), grid_out.ravel()
        np.testing.assert_allclose(table.layer_seconds(c_in, c_out)[:, index], seconds.ravel())
    sp = SearchSpace(TASK.graph, TASK.grid, Budget.parse("latency=1.0"), table)
    smallest, full = sp.costs(np.stack([np.zeros(sp.num_groups, np.int64), sp.full_choices()]))["latency"]
    assert 0 < smallest < full


def test_latency_table_is_cached_per_device_and_settings(tmp_path, latency_table):
    path = str(tmp_path / "latency_table.json")
    latency_table.save(path)
    loaded = LatencyTable.load(path)
    assert loaded.meta == latency_table.meta
    for a, b in zip(loaded.seconds, latency_table.seconds):
        np.testing.assert_array_equal(a, b)
    messages = []
    reused = cached_latency_table(path, TASK.graph, TASK.grid, batch=2, samples=2, repeats=3, log=messages.append)
    assert messages == [] and reused.meta == latency_table.meta
    (tmp_path / "latency_table.json").write_text("{not json")
    remeasured = cached_latency_table(path, TASK.graph, TASK.grid, batch=1, samples=2, repeats=1,
                                      log=messages.append)
    assert "unreadable" in messages[0] and remeasured.meta["batch"] == 1
    assert LatencyTable.load(path).meta["batch"] == 1


def test_latency_budget_search_stays_within_budget(tmp_path, evaluator, params, latency_table):
    full = SearchSpace(TASK.graph, TASK.grid, Budget.parse("latency=1.0"), latency_table)
    smallest = full.cost_ratio(np.zeros((1, full.num_groups), np.int64))[0]
    fraction = round((smallest + 1) / 2, 4)  # small layers cost mostly fixed time: smallest is far above 0
    sp, best = search("random", tmp_path, evaluator, params, budget=f"latency={fraction}", latency=latency_table)
    assert best["latency_ratio"] <= fraction + 1e-9
    assert sp.fits(np.asarray(
        [[TASK.grid.ratios.index(best["widths"][TASK.graph.groups[g].name]) for g in sp.prunable]])).all()
    with pytest.raises(ValueError, match="impossible"):
        SearchSpace(TASK.graph, TASK.grid, Budget.parse(f"latency={smallest / 2:.4f}"), latency_table)
