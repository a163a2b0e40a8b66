"""``nas-jax prune search`` end to end: a PruningNet trained for 2 steps, an evolutionary
search under a FLOPs budget, its best.json exported by ``nas-jax prune export``, the
Pareto picture, a random search under a latency budget, and the clear error of an
impossible budget."""
import json

from nas_jax.cli import main

TRAIN = ["--config.num_steps=2", "--config.width=0.125", "--config.pruning.calibration_batches=1",
         "--config.pruning.gcn_features=8", "--config.pruning.generator_hidden=4",
         "--config.pruning.report_widths=(1.0,)", "--config.batch_size=16", "--config.pruning.grid_start=0.25",
         "--config.pruning.grid_step=0.25"]
SEARCH = ["--config", "experiments/configs/prune_search_digits.py", "--config.search.evaluations=8",
          "--config.search.evolution.population=4", "--config.search.evolution.top_k=2",
          "--config.search.evolution.mutations=2", "--config.search.evolution.crossovers=2"]


def test_search_then_export_best(tmp_path, capsys):
    workdir = tmp_path / "run"
    assert main(["prune", "train", "--config", "experiments/configs/prune_digits.py", "--workdir", str(workdir),
                 *TRAIN]) == 0
    assert main(["prune", "search", "--workdir", str(workdir), "--method", "evolution", "--budget", "flops=0.5",
                 *SEARCH]) == 0
    best_path = workdir / "search" / "evolution" / "best.json"
    best = json.loads(best_path.read_text())
    assert best["flops_ratio"] <= 0.5 and best["evaluations"] == 8 and 0 <= best["val_accuracy"] <= 1
    assert {"widths", "wall_s"} <= set(best) and (workdir / "search" / "pareto.png").stat().st_size > 0
    assert main(["prune", "export", "--workdir", str(workdir), "--widths", str(best_path),
                 "--out", str(tmp_path / "export")]) == 0
    exported = json.loads((tmp_path / "export" / "report.json").read_text())
    assert abs(exported["flops_ratio"] - best["flops_ratio"]) < 1e-9
    # a latency budget: the layer table is measured once, cached, and the best fits it
    latency = ["--config.search.latency.batch=16", "--config.search.latency.samples=2",
               "--config.search.latency.repeats=2"]
    assert main(["prune", "search", "--workdir", str(workdir), "--method", "random", "--budget", "latency=0.95",
                 *SEARCH, *latency]) == 0
    best = json.loads((workdir / "search" / "random" / "best.json").read_text())
    assert best["latency_ratio"] <= 0.95 and best["budget"] == "latency=0.95"
    table = json.loads((workdir / "search" / "latency_table.json").read_text())
    assert table["meta"]["batch"] == 16 and table["meta"]["model"] == "resnet18"
    capsys.readouterr()
    assert main(["prune", "search", "--workdir", str(workdir), "--method", "random", "--budget", "flops=0.001",
                 *SEARCH]) == 2
    assert "impossible" in capsys.readouterr().err
