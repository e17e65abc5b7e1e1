"""The API reference (book/api.md): every public name has a docstring and an entry."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = ["soflow_mini", "soflow_mini.nets", "soflow_mini.baselines", "soflow_mini.train",
           "soflow_mini.evaluation", "soflow_mini.exercises"]
API = ROOT / "book" / "api.md"


def public_names(module) -> list[str]:
    """The module's __all__, or its public attributes defined in it when it has none."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n, v in vars(module).items() if not n.startswith("_")
            and getattr(v, "__module__", module.__name__) == module.__name__ and not inspect.ismodule(v)]


def undocumented(module) -> list[str]:
    """Public classes and functions without a docstring of their own."""
    missing = []
    for name in public_names(module):
        obj = getattr(module, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not (obj.__doc__ or "").strip():
            missing.append(name)
    return missing


@pytest.mark.parametrize("name", MODULES)
def test_public_names_have_docstrings(name):
    module = importlib.import_module(name)
    assert (module.__doc__ or "").strip(), f"{name} has no module docstring"
    missing = undocumented(module)
    assert not missing, f"{name}: public names without a docstring: {missing}"


def test_docstring_check_catches_a_missing_docstring(tmp_path, monkeypatch):
    (tmp_path / "fake_mod.py").write_text(
        '"""A module."""\n__all__ = ["good", "bad", "Thing"]\n'
        'def good():\n    """Documented."""\n\ndef bad():\n    pass\n\nclass Thing:\n    pass\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert undocumented(importlib.import_module("fake_mod")) == ["bad", "Thing"]


def _sections() -> dict[str, tuple[bool, set[str]]]:
    """Per module of api.md: (has an automodule with :members:, its :exclude-members:)."""
    text = API.read_text()
    found = {}
    for block in re.findall(r"\.\. automodule:: (\S+)\n((?:   :.*\n)*)", text):
        module, options = block
        excluded = re.search(r":exclude-members:(.*)", options)
        found[module] = (":members:" in options,
                         {n.strip() for n in excluded.group(1).split(",")} if excluded else set())
    return found


def test_api_page_covers_every_module_and_name():
    sections = _sections()
    top = importlib.import_module("soflow_mini")
    for name in MODULES:
        assert name in sections and sections[name][0], f"book/api.md needs `.. automodule:: {name}` with :members:"
        module = importlib.import_module(name)
        for member in sections[name][1]:
            # An excluded name must be the same object documented at the top level, and linked.
            assert member in public_names(module), f"{name}: excludes {member}, not one of its public names"
            assert name != "soflow_mini" and member in top.__all__ and getattr(top, member) is getattr(module, member)
            assert f"~soflow_mini.{member}`" in API.read_text(), f"book/api.md: link {member} to soflow_mini.{member}"
        if name != "soflow_mini":
            # Each name also exported at the top level is documented there only (no duplicate entries).
            shared = {m for m in public_names(module) if m in top.__all__ and getattr(top, m) is getattr(module, m)}
            assert shared == sections[name][1], (
                f"book/api.md, {name}: exclude exactly the names documented under soflow_mini: {sorted(shared)}")
