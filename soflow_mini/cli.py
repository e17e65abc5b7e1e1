"""Command line: soflow-train, soflow-sample, soflow-evaluate, soflow-prepare-latents, soflow-export.

The same commands run as ``python -m soflow_mini.cli train ...`` (and so under
``torchrun ... -m soflow_mini.cli train ...``); ``soflow-export`` writes the EMA weights of a
run to a small file. Bad input ends the command with exit status 2 and one line on stderr;
a failure while running (missing data, a failed download, a non-finite loss) with status 1;
Ctrl-C during training with status 130 after writing a checkpoint, and Ctrl-C at any other
moment (start-up imports included) with status 130 and one line.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Callable, Sequence

from . import __version__

USAGE_ERROR, RUN_ERROR, INTERRUPTED = 2, 1, 130
_EXPECTED = (ValueError, OSError, ImportError)  # OSError: missing files, failed downloads, full disks


class _HelpFormatter(argparse.HelpFormatter):
    """Help text that shows each option's default (when it has a meaningful one)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.option_strings and default not in (None, False, argparse.SUPPRESS)
                and "%(default)" not in text and "default" not in text):
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage block), with defaults in --help and --version."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=f"%(prog)s (soflow_mini) {__version__}")

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message}\n")


def _command(prog: str):
    """Make a command's main function end Ctrl-C (during its imports too) with one line, status 130."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs) -> int:
            try:
                return func(*args, **kwargs)
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return INTERRUPTED

        return wrapper

    return decorate


def _out_file(path: str | Path, *, force: bool, flag: str = "--force") -> Path:
    """An output file that may be written: not a folder, and not an existing file unless ``force``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    if path.exists() and not force:
        raise ValueError(f"{path} exists; pass {flag} to overwrite it")
    return path


def _out_dir(path: str | Path, option: str) -> Path:
    """An output folder: may exist as a folder, must not be a file."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is an existing file; it must name a folder")
    return path


def _plain_warnings() -> None:
    """Show warnings as one "warning: ..." line, without the source line."""
    warnings.formatwarning = lambda message, *args, **kwargs: f"warning: {message}\n"


def _fail(prog: str, message: str, code: int) -> int:
    message = " ".join(str(message).split())  # one line, whatever the exception held
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def parse_overrides(tokens: Sequence[str]) -> dict[str, str]:
    """``--section.field value`` or ``--section.field=value`` pairs -> {"section.field": "value"}."""
    out: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        key, eq, value = token[2:].partition("=")
        if not token.startswith("--") or "." not in key:
            raise ValueError(f"unrecognized argument {token!r}; overrides look like --train.lr 2e-4")
        if not eq:
            if i + 1 >= len(tokens) or (tokens[i + 1].startswith("--") and "." in tokens[i + 1]):
                raise ValueError(f"--{key} needs a value")
            value = tokens[i + 1]
            i += 1
        out[key] = value
        i += 1
    return out


# ---------------------------------------------------------------- train
_TRAIN_OPTIONS = {"--config": True, "--run-dir": True, "--restart": False, "--list-presets": False,
                  "--print-config": False, "--version": False, "-h": False, "--help": False}  # option -> takes a value


def _split_train_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the command's own options and the preset, the --SECTION.FIELD overrides and anything
    else): an override's value is never taken for the preset."""
    options, rest, preset_seen, i = [], [], False, 0
    while i < len(argv):
        token = argv[i]
        name = token.partition("=")[0]
        if name in _TRAIN_OPTIONS:
            takes_value = _TRAIN_OPTIONS[name] and "=" not in token
            options.extend(argv[i:i + 1 + takes_value])
            i += 1 + takes_value
        elif token.startswith("-"):  # an override (with its value) or an unknown option
            takes_value = token.startswith("--") and "." in name and "=" not in token and i + 1 < len(argv)
            takes_value = takes_value and not (argv[i + 1].startswith("--") and "." in argv[i + 1])
            rest.extend(argv[i:i + 1 + takes_value])
            i += 1 + takes_value
        elif not preset_seen:
            options.append(token)
            preset_seen, i = True, i + 1
        else:
            rest.append(token)
            i += 1
    return options, rest


@_command("soflow-train")
def train_main(argv: Sequence[str] | None = None) -> int:
    """``soflow-train PRESET [--run-dir DIR] [--restart] [--SECTION.FIELD VALUE ...]``"""
    _plain_warnings()
    from .train import NonFiniteLoss, RUN_PRESETS, build_config, from_authors_yaml, train
    from .train.config import SECTIONS
    from .train.distributed import shutdown

    parser = _Parser(
        prog="soflow-train",
        description="Train (or resume) a run from a preset or from one of the authors' YAML configs; "
                    "fields are overridden as --SECTION.FIELD VALUE.",
        epilog=f"sections: {', '.join(SECTIONS)}; e.g. soflow-train toy-moons --train.steps 500 --train.lr 2e-3",
    )
    parser.add_argument("preset", nargs="?", help=f"one of: {', '.join(RUN_PRESETS)}")
    parser.add_argument("--config", metavar="YAML",
                        help="an authors' YAML config (their imagenet.yaml or cifar.yaml) instead of a preset")
    parser.add_argument("--run-dir",
                        help="run folder (default runs/PRESET or runs/YAML-NAME); an existing one is resumed")
    parser.add_argument("--restart", action="store_true",
                        help="start the run folder again from step 0; its old files move to RUN_DIR/previous-N")
    parser.add_argument("--list-presets", action="store_true", help="print the preset names and exit")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config as JSON and exit")
    options, rest = _split_train_argv(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(options)
    if args.list_presets:
        print("\n".join(RUN_PRESETS))
        return 0
    if args.preset is not None and args.config is not None:
        return _fail(parser.prog, f"give a preset or --config, not both (got {args.preset!r} and {args.config})",
                     USAGE_ERROR)
    if args.preset is None and args.config is None:
        return _fail(parser.prog, f"a preset or --config YAML is required; presets are {list(RUN_PRESETS)}",
                     USAGE_ERROR)
    try:
        overrides = parse_overrides(rest)
        if args.config is not None:
            config = from_authors_yaml(args.config, overrides)
        else:
            config = build_config(args.preset, overrides)
    except (ValueError, FileNotFoundError) as err:
        return _fail(parser.prog, str(err), USAGE_ERROR)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    default_name = Path(args.config).stem if args.config is not None else config.preset
    run_dir = Path(args.run_dir or Path("runs") / default_name)
    try:
        result = train(config, run_dir, restart=args.restart)
    except NonFiniteLoss as err:
        return _fail(parser.prog, str(err), RUN_ERROR)
    except _EXPECTED as err:
        return _fail(parser.prog, str(err), RUN_ERROR)
    finally:
        shutdown()
    if result.status == "interrupted":
        print(f"interrupted at step {result.step}; checkpoint {result.checkpoint}; "
              "run the same command again to resume", file=sys.stderr)
        return INTERRUPTED
    return 0


# ---------------------------------------------------------------- sample
@_command("soflow-sample")
def sample_main(argv: Sequence[str] | None = None) -> int:
    """``soflow-sample RUN_OR_CHECKPOINT --out DIR [--num-samples N] [--nfe K] ...``"""
    _plain_warnings()
    from .evaluation import generate, write_samples
    from .train import init_distributed, load_model, load_official, sample_kwargs
    from .train.distributed import shutdown

    parser = _Parser(prog="soflow-sample", description="Draw samples from a trained run or a released checkpoint.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("checkpoint", nargs="?", help="a run folder (its newest checkpoint) or a checkpoint file")
    source.add_argument("--official", metavar="PATH",
                        help="a checkpoint of the authors' training code: their CIFAR-10 U-Net (images) "
                             "or ImageNet-256 DiT (latents, decoded by the SD-VAE)")
    parser.add_argument("--out", required=True, help="output folder: samples.npz and grid.png")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--nfe", type=int, default=1,
                        help="network evaluations per sample (ODE steps for flow matching)")
    parser.add_argument("--labels", default="random", help="'random' or comma-separated class indices, used in turn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="'auto' (a GPU when there is one), cpu, cuda, cuda:1, ...")
    parser.add_argument("--online", action="store_true", help="use the online weights instead of the EMA")
    parser.add_argument("--vae", help="VAE for latent samples (default: the one the latents were made with)")
    parser.add_argument("--grid-size", type=int, default=64, help="samples shown in grid.png")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.nfe < 1 or args.num_samples < 1 or args.batch_size < 1:
        return _fail(parser.prog, "--nfe, --num-samples and --batch-size must be positive", USAGE_ERROR)
    labels = args.labels
    if labels != "random":
        try:
            labels = [int(v) for v in labels.split(",")]
        except ValueError:
            return _fail(parser.prog, f"--labels must be 'random' or integers such as 1,2,3, got {args.labels!r}",
                         USAGE_ERROR)
    try:
        _out_dir(args.out, "--out")
        info, device = init_distributed(args.device)
        if args.official:
            model, spec = load_official(args.official, vae=args.vae, ema=not args.online)
            method = "soflow"
        else:
            model, spec, config, _ = load_model(args.checkpoint, ema=not args.online)
            method = config.train.method
        vae = None
        if spec.kind == "latent":
            from .data.latents import load_vae

            vae = load_vae(args.vae or spec.vae, device)
        samples, y = generate(
            model, spec, num_samples=args.num_samples, batch_size=args.batch_size,
            sample_kwargs=sample_kwargs(method, args.nfe), labels=labels, seed=args.seed, device=device,
            vae=vae, progress=not args.no_progress, dist_info=info,
        )
        path = write_samples(args.out, samples, y, spec, batch_size=args.batch_size, num_samples=args.num_samples,
                             grid_size=args.grid_size, dist_info=info)
    except _EXPECTED as err:
        return _fail(parser.prog, str(err), RUN_ERROR)
    finally:
        shutdown()
    if path is not None:
        print(path)
    return 0


# ---------------------------------------------------------------- evaluate
@_command("soflow-evaluate")
def evaluate_main(argv: Sequence[str] | None = None, *, feature_fn: Callable | None = None) -> int:
    """``soflow-evaluate SAMPLES [--reference REF] [--toy NAME]``; ``feature_fn`` replaces the
    Inception network (tests inject a small one)."""
    import numpy as np

    from .evaluation import evaluate_images, evaluate_points, inception_features, load_reference, save_reference
    from .evaluation.digits import evaluate_digits
    from .evaluation.fid import INCEPTION_WEIGHTS, compute_features, statistics
    from .train.distributed import resolve_device

    parser = _Parser(prog="soflow-evaluate",
                     description="FID / Inception Score of image samples; k-NN precision / recall of digits "
                                 "samples (offline); energy distance and sliced W2 of 2D toy points.")
    parser.add_argument("samples", help="samples.npz from soflow-sample (arr_0 uint8 NHWC, or 2D points), "
                                        "or a .npy array of images (N, H, W, C) uint8 or points (N, 2)")
    parser.add_argument("--reference", help="reference .npz (mu/sigma, e.g. an ADM reference batch, or images arr_0), "
                                            "'cifar10' for the CIFAR-10 training set under --data-root, or 'digits' "
                                            "(the default for 8x8 grey samples)")
    parser.add_argument("--data-root", default="data", help="folder holding cifar-10-batches-py")
    parser.add_argument("--save-reference", metavar="PATH", help="also save the reference mu/sigma here")
    parser.add_argument("--inception-weights", metavar="PATH",
                        help=f"local copy of {INCEPTION_WEIGHTS} (else downloaded)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--isc-splits", type=int, default=10)
    parser.add_argument("--device", default="auto", help="'auto' (a GPU when there is one), cpu, cuda, cuda:1, ...")
    parser.add_argument("--toy", help="toy data set of 2D samples (default: the name stored with them)")
    parser.add_argument("--out", help="also write the metrics as JSON here")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        path = Path(args.samples)
        if not path.is_file():
            raise FileNotFoundError(f"samples not found: {path}")
        arrays = _read_samples(path)
        if args.out:
            _out_file(args.out, force=True)
        if "points" in arrays:
            toy = args.toy or str(arrays.get("toy", ""))
            if not toy:
                raise ValueError("--toy is required: the samples do not name their toy data set")
            metrics = evaluate_points(arrays["points"], toy)
        elif args.reference == "digits" or (args.reference is None and arrays["arr_0"].shape[1:] == (8, 8, 1)):
            metrics = evaluate_digits(arrays["arr_0"])
        else:
            if not args.reference:
                raise ValueError("--reference is required for image samples (an .npz of mu/sigma or images, "
                                 "'cifar10' or 'digits')")
            device = resolve_device(args.device)
            fn = feature_fn or inception_features(args.inception_weights, device)
            kw = dict(batch_size=args.batch_size, progress=not args.no_progress)
            if args.reference == "cifar10":
                from .data.cifar10 import load_cifar10

                reference = statistics(compute_features(load_cifar10(args.data_root)[0], fn, **kw)[0])
            else:
                reference = load_reference(args.reference, fn, **kw)
            if args.save_reference:
                save_reference(args.save_reference, reference)
            metrics = evaluate_images(arrays["arr_0"], reference, fn, isc_splits=args.isc_splits, **kw)
        text = json.dumps(metrics, allow_nan=False)  # strict JSON: NaN is refused, not printed
    except _EXPECTED as err:
        return _fail(parser.prog, str(err), RUN_ERROR)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0


def _read_samples(path: Path) -> dict:
    """The arrays of a samples file: an .npz of soflow-sample, or one .npy array of images
    (N, H, W, C) uint8 or points (N, 2); returns {"points": ...} or {"arr_0": ...}."""
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # a .npy file
            arrays = {"arr_0": loaded}
        else:
            with loaded as npz:
                arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"corrupt or truncated samples file {path} (expected .npz or .npy): "
                         f"{str(err).splitlines()[0][:100]}") from None
    if "points" in arrays:
        return arrays
    if "arr_0" not in arrays:
        raise ValueError(f"{path} holds neither images arr_0 nor points (keys {sorted(arrays)})")
    x = arrays["arr_0"]
    if x.ndim == 2 and x.shape[1] == 2 and np.issubdtype(x.dtype, np.floating):
        return {"points": x}
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"{path}: expected images uint8 (N, H, W, 3) or (N, H, W, 1), or points float (N, 2); "
                         f"got {x.dtype} {x.shape}")
    return arrays


# ---------------------------------------------------------------- prepare-latents
@_command("soflow-prepare-latents")
def prepare_latents_main(argv: Sequence[str] | None = None) -> int:
    """``soflow-prepare-latents IMAGES OUT [--vae NAME] ...``"""
    from .data.latents import DEFAULT_VAE, prepare_latents
    from .train.distributed import resolve_device

    parser = _Parser(prog="soflow-prepare-latents",
                     description="Encode an ImageNet-style image folder into cached SD-VAE latents.")
    parser.add_argument("images", help="image folder with one sub-folder per class (e.g. ILSVRC2012/train)")
    parser.add_argument("out", help="output folder for the latent parts and manifest.json")
    parser.add_argument("--vae", default=DEFAULT_VAE, help="diffusers AutoencoderKL name or local folder")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    parser.add_argument("--device", default="auto", help="'auto' (a GPU when there is one), cpu, cuda, cuda:1, ...")
    parser.add_argument("--shard", type=int, help="this shard (default: RANK under torchrun, else 0)")
    parser.add_argument("--num-shards", type=int, help="number of shards (default: WORLD_SIZE under torchrun, else 1)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    shard = args.shard if args.shard is not None else int(os.environ.get("RANK", 0))
    num_shards = args.num_shards if args.num_shards is not None else int(os.environ.get("WORLD_SIZE", 1))
    try:
        device = resolve_device(args.device, int(os.environ.get("LOCAL_RANK", 0)))
        manifest = prepare_latents(
            args.images, args.out, vae=args.vae, image_size=args.image_size, batch_size=args.batch_size,
            device=device, shard=shard, num_shards=num_shards, dtype=args.dtype, progress=not args.no_progress,
        )
    except _EXPECTED as err:
        return _fail(parser.prog, str(err), RUN_ERROR)
    print(manifest)
    return 0


# ---------------------------------------------------------------- export
@_command("soflow-export")
def export_main(argv: Sequence[str] | None = None) -> int:
    """``soflow-export RUN_OR_CHECKPOINT OUT [--dtype float16] [--force]``"""
    from .train.run import EXPORT_DTYPES, export_model

    parser = _Parser(prog="soflow-export",
                     description="Write the EMA weights of a run (no optimizer or online weights) to one file "
                                 "that soflow-sample and soflow_mini.train.load_model read.")
    parser.add_argument("checkpoint", help="a run folder (its newest checkpoint) or a checkpoint file")
    parser.add_argument("out", help="the file to write, e.g. digits_dit.pt")
    parser.add_argument("--dtype", choices=tuple(EXPORT_DTYPES), default="float32",
                        help="precision of the stored weights (float16 halves the file)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    args = parser.parse_args(argv)
    try:
        _out_file(args.out, force=args.force)
        path = export_model(args.checkpoint, args.out, dtype=args.dtype)
    except _EXPECTED as err:
        return _fail(parser.prog, str(err), RUN_ERROR)
    print(f"{path} ({path.stat().st_size / 2**20:.2f} MiB)")
    return 0


COMMANDS: dict[str, Callable[..., int]] = {
    "train": train_main, "sample": sample_main, "evaluate": evaluate_main, "prepare-latents": prepare_latents_main,
    "export": export_main,
}


@_command("soflow")
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m soflow_mini.cli COMMAND ...``"""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print("usage: python -m soflow_mini.cli {" + ",".join(COMMANDS) + "} ...\n\n"
              "SoFlow training, sampling and evaluation; the same commands as soflow-train, soflow-sample,\n"
              "soflow-evaluate, soflow-prepare-latents and soflow-export. COMMAND --help shows each one's options.")
        return 0
    if argv and argv[0] == "--version":
        print(f"soflow_mini {__version__}")
        return 0
    if not argv or argv[0] not in COMMANDS:
        got = repr(argv[0]) if argv else "nothing"
        print(f"soflow: error: expected a command, one of {list(COMMANDS)}; got {got}", file=sys.stderr)
        return USAGE_ERROR
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
