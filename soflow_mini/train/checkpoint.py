"""Checkpoints written atomically (temporary file, fsync, rename) and found again for resume.

A run keeps ``run_dir/checkpoints/step_XXXXXXXX.pt``; a file that is being written is a
``.tmp`` sibling, so a kill at any moment leaves the previous checkpoint intact. Resume
takes the newest checkpoint that loads.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d{8,})\.pt$")


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    """``run_dir/checkpoints/step_XXXXXXXX.pt`` for ``step``."""
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: readers see the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint; a missing file raises FileNotFoundError, an empty, truncated,
    corrupt or foreign one ValueError naming it, in one short line."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; pass a checkpoint file (checkpoints/step_*.pt) or use the run folder "
                         "where a run folder is accepted")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise ValueError(f"{path} is empty: not a checkpoint (an interrupted copy?)")
    if head[:2] != b"PK" and head[:1] != b"\x80":  # torch.save writes a zip archive (older: a pickle)
        kind = " (it holds JSON, such as config.json)" if head.lstrip()[:1] in (b"{", b"[") else ""
        raise ValueError(f"{path} is not a checkpoint{kind}: not a file written by torch.save")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(f"{path} is not a soflow_mini checkpoint: it holds objects other than tensors "
                         "and plain values") from None
    except Exception as err:  # torch raises several types for damaged zip archives
        raise ValueError(f"corrupt or truncated checkpoint {path}: {_first_sentence(err)}") from None
    if not isinstance(state, dict) or "step" not in state:
        raise ValueError(f"{path} is not a soflow_mini checkpoint (no 'step' entry)")
    return state


def _first_sentence(err: Exception, limit: int = 90) -> str:
    """The start of an exception's message, one line of at most ``limit`` characters."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    text = text.split(". ")[0].rstrip(".")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the finished checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> tuple[Path, dict] | None:
    """The newest checkpoint of a run that loads, with its state; None when there is none.

    A damaged newer checkpoint is skipped with a warning; when checkpoints exist but none
    loads, ValueError names the newest one and why (nothing is deleted).
    """
    errors: list[str] = []
    for _, path in reversed(list_checkpoints(run_dir)):
        try:
            found = path, load_checkpoint(path, map_location)
        except ValueError as err:
            errors.append(str(err))
            continue
        for message in errors:
            warnings.warn(f"skipping {message}; using {path}", stacklevel=2)
        return found
    if errors:
        more = f" (and {len(errors) - 1} older ones)" if len(errors) > 1 else ""
        raise ValueError(f"{errors[0]}{more}")
    return None


def archive_run(run_dir: str | Path) -> Path | None:
    """Move a run's checkpoints, logs, sample grids and config into ``run_dir/previous-N``
    (the first free N), so a new run can start in the folder without losing anything.
    Returns that folder, or None when there was nothing to move."""
    run_dir = Path(run_dir)
    names = [CHECKPOINT_DIR, "samples", "config.json", "log.csv", "log.jsonl", "tensorboard"]
    present = [run_dir / n for n in names if (run_dir / n).exists()]
    if not present:
        return None
    n = 1
    while (run_dir / f"previous-{n}").exists():
        n += 1
    target = run_dir / f"previous-{n}"
    target.mkdir()
    for item in present:
        os.replace(item, target / item.name)
    return target


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints."""
    for _, path in list_checkpoints(run_dir)[:-keep]:
        path.unlink(missing_ok=True)


# ---------------------------------------------------------------- random states
def rng_state(device: torch.device) -> dict[str, Any]:
    """The CPU random state and, for an accelerator, its device's state."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type != "cpu":
        state[device.type] = torch.get_device_module(device.type).get_rng_state()  # current device
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore ``rng_state``'s output (its tensors may have been loaded onto any device)."""
    torch.set_rng_state(state["cpu"].cpu())
    if device.type != "cpu" and device.type in state:
        torch.get_device_module(device.type).set_rng_state(state[device.type].cpu())


@contextlib.contextmanager
def forked_rng(device: torch.device, seed: int):
    """A block whose global random draws start from ``seed``; the outer state is restored."""
    devices = [device] if device.type != "cpu" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        torch.manual_seed(seed)
        yield
