"""Vendor the book's browser assets from the npm registry into .vendor/ (git-ignored).

The HTML must read offline, so nothing is loaded from a CDN when a page is viewed:
MathJax 3 and the Jupyter widget manager (require.js + @jupyter-widgets/html-manager) are
fetched once with `npm pack` (the npm registry's ordinary client), unpacked, and the files
the pages need are copied to .vendor/, which _config.yml lists in `html_static_path`:

    .vendor/mathjax/tex-chtml.js (+ input/, output/chtml/, ui/, a11y/, sre/)
    .vendor/jupyter-widgets/require.js, embed-amd.js (+ its fonts)
    .vendor/jupyter-widgets/mathjax-hub-shim.js (the book's own: book/_tools/mathjax_hub_shim.js)

Usage: python book/_tools/vendor_assets.py [--force]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
VENDOR = ROOT / ".vendor"
STAMP = VENDOR / "versions.json"

PACKAGES = {
    "mathjax": "3.2.2",
    "@jupyter-widgets/html-manager": "1.0.15",
    "requirejs": "2.3.8",
}
# Parts of MathJax's es5/ build the pages use: the TeX -> CommonHTML component, the
# extensions and fonts it loads on demand, and the menu / accessibility modules.
MATHJAX_PARTS = ["tex-chtml.js", "input", "output/chtml", "ui", "a11y", "sre", "adaptors"]


def _npm_pack(spec: str, dest: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        sys.exit("npm is needed to vendor MathJax and the widget manager (apt-get install npm)")
    out = subprocess.run(
        [npm, "pack", "--silent", spec], cwd=dest, check=True, capture_output=True, text=True
    ).stdout.split()
    tgz = dest / out[-1]
    unpacked = dest / tgz.name.removesuffix(".tgz")
    with tarfile.open(tgz) as tar:
        tar.extractall(unpacked, filter="data")
    return unpacked / "package"


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, dirs_exist_ok=True)
    else:
        shutil.copy2(src, dst)


def _install_shim() -> None:
    _copy(HERE / "mathjax_hub_shim.js", VENDOR / "jupyter-widgets" / "mathjax-hub-shim.js")


def vendor(force: bool = False) -> None:
    if not force and STAMP.exists() and json.loads(STAMP.read_text()) == PACKAGES:
        _install_shim()  # the book's own file: always the current copy
        STAMP.touch()  # up to date for make
        return
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pkg = {name: _npm_pack(f"{name}@{version}", tmp) for name, version in PACKAGES.items()}
        es5 = pkg["mathjax"] / "es5"
        for part in MATHJAX_PARTS:
            _copy(es5 / part, VENDOR / "mathjax" / part)
        _copy(pkg["mathjax"] / "LICENSE", VENDOR / "mathjax" / "LICENSE")
        widgets = VENDOR / "jupyter-widgets"
        _copy(pkg["requirejs"] / "require.js", widgets / "require.js")
        dist = pkg["@jupyter-widgets/html-manager"] / "dist"
        for f in dist.iterdir():
            # embed-amd.js and the fonts/images its CSS refers to; not the other bundles.
            if f.name == "embed-amd.js" or f.suffix in {".woff", ".woff2", ".ttf", ".eot", ".svg"}:
                _copy(f, widgets / f.name)
    _install_shim()
    STAMP.write_text(json.dumps(PACKAGES, indent=1) + "\n")
    print(f"vendored {', '.join(f'{k}@{v}' for k, v in PACKAGES.items())} into {VENDOR.relative_to(ROOT)}/")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="fetch again even if up to date")
    vendor(parser.parse_args().force)
