"""Orbax checkpoints of {params, opt_state}; orbax commits each step atomically, so a kill never
leaves a half-written step behind and `steps()` only ever names a committed one. Files damaged
afterwards (deleted, truncated on a full disk or a bad copy) surface on restore as DamagedCheckpoint."""

from __future__ import annotations

from pathlib import Path

import jax
import orbax.checkpoint as ocp


class DamagedCheckpoint(Exception):
    """A committed step that no longer restores onto the run's state structure."""


class Checkpoints:
    def __init__(self, directory: Path, keep: int):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    @classmethod
    def saved_steps(cls, directory: Path) -> list[int]:
        """The committed steps in `directory`, without creating it when it does not exist."""
        if not Path(directory).is_dir():
            return []
        checkpoints = cls(directory, keep=1)
        try:
            return checkpoints.steps()
        finally:
            checkpoints.close()

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: dict) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)
        self._manager.wait_until_finished()

    def restore(self, step: int, like: dict) -> dict:
        """Restores onto the shardings of `like`, so a resumed run sits on the same mesh layout."""
        abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=a.sharding), like)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        except Exception as err:  # noqa: BLE001 - orbax/tensorstore raise many types for one cause
            lines = str(err).strip().splitlines()
            raise DamagedCheckpoint(f"{type(err).__name__}: {lines[0][:200] if lines else ''}") from err

    def delete_after(self, step: int) -> None:
        """Drop steps after `step`: a run resumed from `step` writes them again."""
        for later in self.steps():
            if later > step:
                self._manager.delete(later)

    def close(self) -> None:
        self._manager.close()
