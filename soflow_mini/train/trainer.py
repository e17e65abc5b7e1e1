"""A generic trainer: AdamW or RAdam, EMA, checkpoints, resume, logs, sample grids, one or
many processes, micro-batches.

It knows nothing about the model beyond two calls, which SoFlow, FlowMatching and MeanFlow
all provide:
    model(x0, y, step=, total_steps=, generator=) -> (loss, logs)   (their forward is loss)
    model.sample(noise, y, **sample_kwargs) -> x0
With an augmentation ``augment(x0, generator=) -> (x0, labels)`` the loss call also gets
``augment_labels=labels``.
Randomness is a function of (seed, step, shard): shard j of the global batch at step k
reads the same data and draws the same noise whether it runs in process 0 of 1 or 3 of 4,
so an interrupted run resumes exactly and a multi-process run matches a single process.
"""

from __future__ import annotations

import contextlib
import csv
import json
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..ema import EMA
from . import distributed
from .checkpoint import (
    checkpoint_path, forked_rng, latest_checkpoint, list_checkpoints, prune_checkpoints, rng_state, save_checkpoint,
    set_rng_state,
)
from .config import TrainConfig
from .data import IndexStream, TrainData, derive_seed
from .distributed import DistInfo

_DATA_STREAM, _MODEL_STREAM, _GRID_STREAM, _AUGMENT_STREAM = 1, 2, 3, 4  # sub-streams of derive_seed
OPTIMIZERS = {"adamw": torch.optim.AdamW, "radam": torch.optim.RAdam}


def shards_per_process(batch_size: int, world_size: int, grad_accum: int = 1, micro_batch: int = 0) -> int:
    """The number of shards (passes) of one process: ``grad_accum``, raised to the smallest
    count whose shards hold at most ``micro_batch`` samples (0: no cap) and divide evenly."""
    if batch_size % world_size:
        raise ValueError(f"train.batch_size ({batch_size}) must be divisible by the number of processes ({world_size})")
    per_process = batch_size // world_size
    if micro_batch <= 0:
        return grad_accum
    for k in range(grad_accum, per_process + 1):
        if per_process % k == 0 and per_process // k <= micro_batch:
            return k
    raise ValueError(f"train.grad_accum ({grad_accum}) exceeds the {per_process} samples per process")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stopped without writing a checkpoint."""


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns: the step reached, whether the run finished or was
    interrupted, the last logged values and the checkpoint of that step."""

    step: int
    status: Literal["finished", "interrupted"]
    logs: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None


class Trainer:
    """Train ``model`` on ``data`` as ``config`` says, keeping everything in ``run_dir``.

    extra_state: entries stored in every checkpoint (the run config, the data spec).
    sample_kwargs: keyword arguments of ``model.sample`` for the grids (e.g. nfe=1).
    write_grid: ``write_grid(samples, path)`` saves a picture of samples; None: no grids.
    augment: ``augment(x0, generator=g) -> (x0, labels)`` applied to each shard on the device,
    its draws a function of (seed, step, shard); the labels go to the loss as
    ``augment_labels``. None: no augmentation.

    Example::

        trainer = Trainer(SoFlow(ToyMLP()), PointData("moons", 4096, conditional=False, seed=0),
                          TrainConfig(steps=100, batch_size=64), "runs/moons")
        result = trainer.fit()
    """

    def __init__(
        self,
        model: nn.Module,
        data: TrainData,
        config: TrainConfig,
        run_dir: str | Path,
        *,
        device: torch.device | None = None,
        dist_info: DistInfo | None = None,
        extra_state: dict[str, Any] | None = None,
        sample_kwargs: dict[str, Any] | None = None,
        write_grid: Callable[[Tensor, Path], Any] | None = None,
        augment: Callable[..., tuple[Tensor, Tensor]] | None = None,
    ):
        self.config, self.data, self.run_dir = config, data, Path(run_dir)
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise ValueError(f"run folder {self.run_dir} is an existing file; choose another --run-dir")
        self.dist = dist_info or DistInfo()
        self.device = device or torch.device("cpu")
        self.extra_state = extra_state or {}
        self.sample_kwargs = sample_kwargs or {}
        self.write_grid = write_grid
        self.augment = augment
        self.grad_accum = shards_per_process(config.batch_size, self.dist.world_size, config.grad_accum,
                                             config.micro_batch)
        shards = self.dist.world_size * self.grad_accum
        if config.batch_size % shards:
            raise ValueError(
                f"train.batch_size ({config.batch_size}) must be divisible by processes x grad_accum ({shards})"
            )
        self.shard_size = config.batch_size // shards
        self.stream = IndexStream(len(data), config.seed)

        self.model = model.to(self.device)
        # Updated every ema_every steps with ema_decay ** ema_every (a Python float: float64), so
        # the average spans the same number of steps as a per-step update, as the authors do.
        self.ema = EMA(self.model, config.ema_decay ** config.ema_every, warmup=config.ema_warmup,
                       dtype=getattr(torch, config.ema_dtype))
        # Fused AdamW on CUDA (one kernel for all parameters); on the CPU it measured no faster
        # than the default (benchmarks/results/optimizations.md), which the CPU runs keep.
        # RAdam (the authors' CIFAR-10 optimiser) has no fused kernel; it uses foreach.
        fused = {"fused": True} if self.device.type == "cuda" and config.optimizer == "adamw" else {}
        self.optimizer = OPTIMIZERS[config.optimizer](
            self.model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, **fused,
        )
        self.step = 0
        self.resumed_from: Path | None = None
        torch.manual_seed(derive_seed(config.seed, self.dist.rank))  # per-rank seed for any global draw
        try:
            found = latest_checkpoint(self.run_dir, map_location=self.device)
        except ValueError as err:  # checkpoints exist, none loads: never restart silently
            raise ValueError(f"cannot resume: {err}; nothing was changed: --restart (restart=True) starts again "
                             "from step 0 and moves the old files to RUN_DIR/previous-N") from None
        if found is not None:
            self._load(*found)
        self.wrapped = self.model
        if self.dist.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self._stop = threading.Event()
        self._tensorboard: Any = None  # a SummaryWriter while fit() runs with config.tensorboard
        self._writer_class = _summary_writer_class() if config.tensorboard and self.dist.is_main else None
        self._bad_step = torch.full((), -1, device=self.device, dtype=torch.long)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": distributed.all_gather_objects(rng_state(self.device)),  # one per process
            **self.extra_state,
        }

    def _load(self, path: Path, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        rngs = state.get("rng", [])
        if len(rngs) == self.dist.world_size:
            set_rng_state(rngs[self.dist.rank], self.device)
        self.resumed_from = path

    def save(self) -> Path:
        """Checkpoint the current step (all processes call this; process 0 writes)."""
        self._check_finite()
        state = self.state_dict()
        path = checkpoint_path(self.run_dir, self.step)
        if self.dist.is_main:
            save_checkpoint(state, path)
            prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
        distributed.barrier()
        return path

    # ------------------------------------------------------------------ one step
    def _host_batches(self, step: int) -> list[tuple[Tensor, Tensor | None]]:
        """This process's shards of the global batch of ``step``, on the CPU."""
        out = []
        for a in range(self.grad_accum):
            shard = self.dist.rank * self.grad_accum + a
            index = self.stream.take(step * self.config.batch_size + shard * self.shard_size, self.shard_size)
            g = torch.Generator().manual_seed(derive_seed(self.config.seed, step, shard, _DATA_STREAM))
            out.append(self.data.batch(index, g))
        return out

    def _train_step(self, step: int, batches: list[tuple[Tensor, Tensor | None]]) -> dict[str, Tensor]:
        config = self.config
        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=config.bf16)
        sums: dict[str, Tensor] = {}
        accum = self.grad_accum
        for a, (x, y) in enumerate(batches):
            shard = self.dist.rank * accum + a
            x = x.to(self.device, non_blocking=True)
            y = None if y is None else y.to(self.device, non_blocking=True)
            extra = {}
            if self.augment is not None:
                g_aug = torch.Generator(self.device).manual_seed(derive_seed(config.seed, step, shard, _AUGMENT_STREAM))
                x, extra["augment_labels"] = self.augment(x, generator=g_aug)  # (n, ...), (n, 6)
            g = torch.Generator(self.device).manual_seed(derive_seed(config.seed, step, shard, _MODEL_STREAM))
            last = a == len(batches) - 1
            no_sync = self.wrapped.no_sync() if self.dist.active and not last else contextlib.nullcontext()
            with no_sync:
                with autocast:
                    loss, logs = self.wrapped(x, y, step=step, total_steps=config.steps, generator=g, **extra)
                (loss / accum).backward()
            bad = ~torch.isfinite(loss.detach()) & (self._bad_step < 0)
            self._bad_step = torch.where(bad, torch.full_like(self._bad_step, step + 1), self._bad_step)
            for key, value in logs.items():
                sums[key] = sums.get(key, 0.0) + value.detach().float() / accum
        if config.grad_clip > 0:
            sums["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip).detach()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if (step + 1) % config.ema_every == 0:
            self.ema.update(self.model)
        return sums

    def _check_finite(self) -> None:
        bad = int(distributed.all_reduce(self._bad_step.clone(), "max"))
        if bad >= 0:
            found = list_checkpoints(self.run_dir)
            kept = f"the last good checkpoint is {found[-1][1]}" if found else "no checkpoint was written"
            raise NonFiniteLoss(f"non-finite loss at step {bad}: training stopped; {kept}")

    # ------------------------------------------------------------------ grids and logs
    @torch.no_grad()
    def write_samples(self, path: Path) -> None:
        """A grid of EMA samples from fixed noise (process 0 only)."""
        if self.write_grid is None or not self.dist.is_main:
            return
        n, spec = self.config.grid_samples, self.data.spec
        g = torch.Generator().manual_seed(derive_seed(self.config.seed, _GRID_STREAM))
        noise = torch.randn((n, *spec.shape), generator=g).to(self.device)  # (n, ...)
        y = (torch.arange(n) % spec.num_classes).to(self.device) if spec.num_classes else None
        self.model.eval()
        with self.ema.swap_in(self.model), forked_rng(self.device, self.config.seed):
            samples = self.model.sample(noise, y, **self.sample_kwargs)
        self.model.train()
        self.write_grid(samples, path)
        if self._tensorboard is not None and path.is_file():
            from PIL import Image

            with Image.open(path) as picture:
                self._tensorboard.add_image("samples", np.asarray(picture.convert("RGB")), self.step, dataformats="HWC")

    def _log_path(self) -> Path:
        return self.run_dir / f"log.{self.config.log_format}"

    # ------------------------------------------------------------------ the loop
    def fit(self, stop_at: int | None = None) -> TrainResult:
        """Train to ``config.steps`` (or stop early after step ``stop_at``, as if interrupted),
        resuming from the newest checkpoint in the run folder. Ctrl-C or SIGTERM stops at the
        end of the current step (under torchrun, at the next log step) with a checkpoint."""
        config, main = self.config, self.dist.is_main
        end = config.steps if stop_at is None else min(stop_at, config.steps)
        if self.resumed_from is not None and self.step >= config.steps:
            if main:
                print(f"{self.run_dir}: already finished at step {self.step} (train.steps {config.steps}); "
                      "nothing to do: raise --train.steps to train on, or pass --restart to start again",
                      file=sys.stderr)
            return TrainResult(self.step, "finished", {}, self.resumed_from)
        if main and self.resumed_from is not None:  # shown also without progress bars
            print(f"resuming from {self.resumed_from} (step {self.step})", file=sys.stderr)
        if self._writer_class is not None:  # events of steps a resumed run repeats are dropped
            self._tensorboard = self._writer_class(str(self.run_dir / "tensorboard"), purge_step=self.step or None)
        log = LogWriter(self._log_path(), config.log_format, after=self.step) if main else None
        bar = tqdm(total=config.steps, initial=self.step, disable=not (main and config.progress),
                   desc=f"train {self.run_dir.name}", dynamic_ncols=True)
        window: dict[str, Tensor] = {}
        count, tick, last_logs, start = 0, time.perf_counter(), {}, self.step
        saved_at = self.step if self.resumed_from is not None else None  # nothing new to save yet
        pool = ThreadPoolExecutor(1)  # prepares the next step's batches while this one runs
        pending = pool.submit(self._host_batches, self.step)
        at = lambda every: every > 0 and self.step % every == 0  # noqa: E731 - "every N steps"
        self.model.train()
        try:
            with self._stop_on_signals(), tf32_matmuls(config.tf32):
                while self.step < end:
                    step = self.step
                    batches = pending.result()
                    if step + 1 < end:
                        pending = pool.submit(self._host_batches, step + 1)
                    logs = self._train_step(step, batches)
                    self.step = step + 1
                    for key, value in logs.items():
                        window[key] = window.get(key, 0.0) + value
                    count += 1
                    bar.update(1)
                    logged = at(config.log_every) or self.step == end
                    if logged:
                        last_logs = self._log(window, count, time.perf_counter() - tick, log, bar)
                        window, count = {}, 0
                    if at(config.sample_every):
                        self.write_samples(self.run_dir / "samples" / f"step_{self.step:08d}.png")
                    if at(config.checkpoint_every):
                        self.save()
                        saved_at = self.step
                    if logged:  # the next window times training only, not grids or checkpoints
                        tick = time.perf_counter()
                    if self._stop_requested(at(config.log_every)):
                        break
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()
            if log is not None:
                log.close()
            if self._tensorboard is not None:
                self._tensorboard.flush()
        path = checkpoint_path(self.run_dir, self.step) if saved_at == self.step else self.save()
        status = "finished" if self.step >= config.steps else "interrupted"
        if self.step > start and status == "finished" and not at(config.sample_every):  # the final grid
            self.write_samples(self.run_dir / "samples" / f"step_{self.step:08d}.png")
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        return TrainResult(self.step, status, last_logs, path)

    def _log(self, window, count, seconds, log, bar) -> dict[str, float]:
        """Average the window over steps and processes, check finiteness, write one row."""
        self._check_finite()
        keys = sorted(window)
        means = torch.stack([torch.as_tensor(window[k], device=self.device) / count for k in keys])
        values = distributed.all_reduce(means, "mean").tolist()
        row = {"step": self.step, **dict(zip(keys, values, strict=True))}
        row.update(lr=self.optimizer.param_groups[0]["lr"], steps_per_s=count / max(seconds, 1e-9))
        row["samples_per_s"] = row["steps_per_s"] * self.config.batch_size
        if self._tensorboard is not None:
            for key, value in row.items():
                if key != "step":
                    self._tensorboard.add_scalar(key, value, self.step)
        if log is not None:
            log.write(row)
            shown = {k: f"{row[k]:.4g}" for k in ("loss", "fm_mse", "scm_mse") if k in row}
            bar.set_postfix(**shown, steps_per_s=f"{row['steps_per_s']:.2f}")
        return row

    def _stop_requested(self, log_step: bool) -> bool:
        if not self.dist.active:
            return self._stop.is_set()
        if not log_step:  # a collective every step would cost throughput
            return False
        flag = torch.tensor(float(self._stop.is_set()), device=self.device)
        return bool(distributed.all_reduce(flag, "max") > 0)

    @contextlib.contextmanager
    def _stop_on_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._stop.is_set():  # second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop.set()
            if self.dist.is_main:
                tqdm.write(f"{signal.Signals(signum).name}: stopping after this step with a checkpoint "
                           "(press Ctrl-C again to abort without one)", file=sys.stderr)

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)


@contextlib.contextmanager
def tf32_matmuls(enabled: bool):
    """TF32 for float32 matmuls and cuDNN convolutions on CUDA inside the block (as the
    authors train); the previous settings come back on exit. No effect on a CPU."""
    if not enabled:
        yield
        return
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _summary_writer_class() -> type:
    """torch's SummaryWriter, or ImportError in one line when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError("train.tensorboard needs the tensorboard package: pip install 'soflow-mini[tensorboard]' "
                          "(or set --train.tensorboard false)") from None
    return SummaryWriter


class LogWriter:
    """Rows of numbers as CSV (header from the first row) or JSON lines. Opening an existing
    log keeps only the rows up to step ``after``, so a resumed run continues it seamlessly."""

    def __init__(self, path: Path, fmt: str, *, after: int):
        self.path, self.fmt = path, fmt
        path.parent.mkdir(parents=True, exist_ok=True)
        rows: list[dict] = []
        if path.exists() and after > 0:
            with open(path) as fh:
                rows = list(csv.DictReader(fh)) if fmt == "csv" else [json.loads(line) for line in fh if line.strip()]
            rows = [r for r in rows if int(float(r["step"])) <= after]
        self.fields = list(rows[0]) if rows else None
        self.fh = open(path, "w", newline="")
        self.writer = None
        for row in rows:
            self.write(row)

    def write(self, row: dict) -> None:
        if self.fmt == "jsonl":
            self.fh.write(json.dumps(row) + "\n")
        else:
            if self.writer is None:
                self.fields = self.fields or list(row)
                self.writer = csv.DictWriter(self.fh, self.fields, extrasaction="ignore")
                self.writer.writeheader()
            self.writer.writerow(row)
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def read_log(path: str | Path) -> list[dict[str, float]]:
    """The rows of a CSV or JSON-lines training log, as numbers."""
    path = Path(path)
    with open(path) as fh:
        if path.suffix == ".csv":
            return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]
        return [json.loads(line) for line in fh if line.strip()]
