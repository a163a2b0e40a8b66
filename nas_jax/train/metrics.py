"""What a run shows and leaves behind: a tqdm progress bar (step rate, ETA) on a
terminal or plain log lines otherwise; ``WORKDIR/metrics.jsonl`` (one JSON object per
logging point: ``{"step", "split", <metric>: float ...}``); TensorBoard event files under
``WORKDIR/tensorboard``; ``WORKDIR/training_curve.png`` when the run closes. In a multi-process job process 0
alone writes them, its lines prefixed with ``[process 0/N]``.

Nothing here touches device arrays: the loop hands over floats at logging points only.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict, List

from nas_jax.common import save_figure

METRICS_FILE = "metrics.jsonl"
CURVE_FILE = "training_curve.png"


def read_metrics(workdir: str) -> List[dict]:
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


class RunLogger:
    """Progress and metrics of one run that resumes at ``start_step`` of ``total_steps``.

    Lines of ``metrics.jsonl`` past ``start_step`` (written by a run that was killed after
    its last checkpoint) are dropped, so the file describes one consistent history.
    """

    def __init__(self, workdir: str, total_steps: int, start_step: int = 0, progress_bar=None):
        import tensorboardX

        from nas_jax.distributed import is_primary, speaker

        self.workdir, self.total_steps, self.step = workdir, total_steps, start_step
        self._t0, self._s0, self._prefix = time.perf_counter(), start_step, (speaker() or "") and speaker() + " "
        self._bar = self._file = self._tb = None
        if not is_primary():  # in a multi-process job process 0 alone writes and prints
            return
        os.makedirs(workdir, exist_ok=True)
        kept = [r for r in read_metrics(workdir) if r["step"] <= start_step]
        self._file = open(os.path.join(workdir, METRICS_FILE), "w")
        for record in kept:
            self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, "tensorboard"))
        use_bar = sys.stderr.isatty() if progress_bar is None else progress_bar
        if use_bar:
            from tqdm import tqdm
            self._bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True)

    def advance(self, steps: int = 1) -> None:
        self.step += steps
        if self._bar is not None:
            self._bar.update(steps)

    def write(self, step: int, split: str, metrics: Dict[str, float]) -> None:
        if self._file is None:
            return
        record = {"step": step, "split": split, **{k: float(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        for k, v in metrics.items():
            self._tb.add_scalar(f"{split}/{k}", float(v), step)
        summary = " ".join(f"{k} {float(v):.4g}" for k, v in metrics.items())
        if self._bar is not None:
            self._bar.set_postfix_str(f"{split}: {summary}", refresh=False)
        else:
            rate = (self.step - self._s0) / max(time.perf_counter() - self._t0, 1e-9)
            eta = (self.total_steps - self.step) / rate if rate > 0 else float("inf")
            print(f"{self._prefix}step {step}/{self.total_steps} {split}: {summary} ({rate:.2f} steps/s, ETA "
                  f"{eta:.0f} s)", flush=True)

    def close(self) -> None:
        if self._file is None:
            return
        if self._bar is not None:
            self._bar.close()
        self._file.close()
        self._tb.close()
        plot_curves(self.workdir)


def plot_curves(workdir: str) -> str:
    """``WORKDIR/training_curve.png``: loss and accuracy per step for each split."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(workdir)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for split in sorted({r["split"] for r in records}):
            points = [(r["step"], r[key]) for r in records if r["split"] == split and key in r]
            if points:
                ax.plot(*zip(*points), marker="." if split != "train" else None, label=split)
        ax.set_xlabel("step")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a run stopped at step 0 has no points
            ax.legend()
    fig.tight_layout()
    path = os.path.join(workdir, CURVE_FILE)
    return save_figure(fig, path, 100)
