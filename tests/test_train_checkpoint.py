"""Atomic checkpoints: a kill while writing leaves the previous checkpoint loadable."""

import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

from soflow_mini.train.checkpoint import (
    checkpoint_path, latest_checkpoint, list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint,
)

DIES_WHILE_WRITING = textwrap.dedent("""
    import os, signal, sys, torch
    from soflow_mini.train.checkpoint import checkpoint_path, save_checkpoint
    run = sys.argv[1]
    save_checkpoint({"step": 1, "w": torch.ones(3)}, checkpoint_path(run, 1))

    def dying_save(obj, fh, *args, **kwargs):  # half a file reaches the disk, then SIGKILL
        fh.write(b"PK\\x03\\x04" + bytes(1000))
        fh.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dying_save
    save_checkpoint({"step": 2, "w": torch.zeros(3)}, checkpoint_path(run, 2))
""")


def test_kill_during_write_keeps_previous_checkpoint(tmp_path):
    proc = subprocess.run([sys.executable, "-c", DIES_WHILE_WRITING, str(tmp_path)], capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    leftovers = [p.name for p in (tmp_path / "checkpoints").iterdir()]
    assert any(".tmp" in name for name in leftovers)  # the half-written file, never renamed
    assert [step for step, _ in list_checkpoints(tmp_path)] == [1]
    path, state = latest_checkpoint(tmp_path)
    assert path == checkpoint_path(tmp_path, 1) and torch.equal(state["w"], torch.ones(3))


def test_corrupt_newest_checkpoint_is_skipped_with_a_warning(tmp_path):
    save_checkpoint({"step": 1, "w": torch.ones(2)}, checkpoint_path(tmp_path, 1))
    full = checkpoint_path(tmp_path, 2)
    save_checkpoint({"step": 2, "w": torch.zeros(2)}, full)
    full.write_bytes(full.read_bytes()[:100])  # truncated (disk full, copied half, ...)
    with pytest.raises(ValueError, match=r"corrupt or truncated checkpoint .*step_00000002\.pt"):
        load_checkpoint(full)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path, state = latest_checkpoint(tmp_path)
    assert state["step"] == 1 and "step_00000002.pt" in str(caught[0].message)


def test_prune_keeps_newest(tmp_path):
    for step in (1, 2, 3, 10):
        save_checkpoint({"step": step}, checkpoint_path(tmp_path, step))
    prune_checkpoints(tmp_path, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3, 10]
