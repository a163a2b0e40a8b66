"""Checkpoints with orbax: the ``TrainState`` (``StandardSave``), the data iterator's
position and the run's config (JSON), one directory per step under ``directory``.

Saving is asynchronous and atomic (orbax writes to a temporary directory and renames it
when complete), so a run killed mid-save leaves the previous checkpoints intact.
``restore_latest`` tries the newest step first; a step that fails to restore (a deleted
or truncated file) is reported with a warning, moved aside to ``corrupt_<step>`` (so the
run can save that step again) and the previous step is tried.

``save_deploy`` writes a run's deploy (fused) network, the one format ``nas-jax fuse`` and
``nas-jax repnas`` share: ``W/deploy`` (orbax, ``{'params'}`` of ``block='deploy'``) and
``W/deploy.json`` (the model settings).
"""
from __future__ import annotations

import os
import warnings
from typing import Any, NamedTuple, Optional

import jax
import orbax.checkpoint as ocp

from nas_jax.common import write_json_atomic


DEPLOY_DIR = "deploy"


def save_deploy(workdir: str, deploy_variables, settings: dict) -> str:
    """Writes ``W/deploy`` and ``W/deploy.json`` (``settings`` plus ``block: deploy``);
    returns the deploy directory."""
    out_dir = os.path.abspath(os.path.join(workdir, DEPLOY_DIR))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(out_dir, jax.device_get(deploy_variables), force=True)
    write_json_atomic(os.path.join(workdir, "deploy.json"), {**settings, "block": "deploy"}, indent=2)
    return out_dir


class Restored(NamedTuple):
    step: int
    state: Any
    data_state: dict
    config: dict


class Checkpointer:
    def __init__(self, directory: str, max_to_keep: int = 3):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def save(self, step: int, state, data_state: dict, config: dict) -> None:
        """Copies ``state`` (replicated) to the host, then writes it in the background;
        ``wait`` or the next save finishes it. (Host numpy arrays: orbax slices device
        arrays replica by replica with one dispatched op each, seconds on many devices.)"""
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(jax.device_get(state)), data=ocp.args.JsonSave(data_state),
            config=ocp.args.JsonSave(config)))

    def steps(self):
        return sorted(self._manager.all_steps())

    def restore_latest(self, abstract_state) -> Optional[Restored]:
        """The newest readable checkpoint restored into ``abstract_state``'s shapes and
        shardings, or None if there is none."""
        corrupt = []
        restored = None
        for step in reversed(self.steps()):
            try:
                out = self._manager.restore(step, args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state), data=ocp.args.JsonRestore(),
                    config=ocp.args.JsonRestore()))
            except Exception as e:  # orbax / tensorstore raise many types for damaged files
                warnings.warn(f"checkpoint at step {step} in {self.directory} is unreadable "
                              f"({type(e).__name__}: {str(e)[:300]}); trying the previous one", stacklevel=2)
                corrupt.append(step)
                continue
            restored = Restored(step, out["state"], dict(out["data"]), dict(out["config"]))
            break
        for step in corrupt:
            os.replace(os.path.join(self.directory, str(step)), os.path.join(self.directory, f"corrupt_{step}"))
        if corrupt:
            self._manager.reload()
        return restored

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()
