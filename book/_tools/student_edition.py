"""Write the student edition of the book (``make student``) and grade students' notebooks.

Every exercise of the student edition keeps its task, its stub and its check, and loses its
worked solution. The chapters mark their exercises with cell tags:

    exercise-task      the Markdown cell that states the exercise           kept
    exercise-stub      a code cell the student completes (optional)          kept
    exercise-solution  the worked solution (code or Markdown)                removed
    exercise-check     the code that checks the answer                       kept, wrapped

An exercise runs from its task cell to its last check cell (a Markdown cell tagged
exercise-solution after the check, a discussion of the answer, belongs to it too). Without a stub cell, the stub
is derived from the solution: its imports stay, each function and class keeps its signature
and docstring and raises NotImplementedError, and each value the check reads becomes the
placeholder ``...``. A check cell is wrapped in ``soflow_mini.exercises.check``, which
turns a failure into a one-line message (stub not written, wrong answer, error in the
student's code); its stored output is cleared, since it shows the answer.

The edition is a copy of the book's sources (``_config.yml``, ``_toc.yml``, ``book/``)
whose configuration names the branch that publishes it, so the Colab buttons of its HTML
and the Colab link at the top of each of its notebooks open its own files; the Colab
install cell still installs the library from the repository's main branch.

Usage: python book/_tools/student_edition.py [--out _build/student] [--branch student]
       python book/_tools/student_edition.py --grade NOTEBOOK [NOTEBOOK ...]
  --grade  execute each (student) notebook in a fresh kernel and list every exercise check
           as passed or failed with its message; exit 1 if any failed.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sync_colab_cells import ROOT, chapter_notebooks  # noqa: E402

TASK, STUB, SOLUTION, CHECK = "exercise-task", "exercise-stub", "exercise-solution", "exercise-check"
STUDENT_BRANCH = "student"
STUDENT_CELL_ID = "student-edition"
CHECK_IMPORT = "from soflow_mini.exercises import check"


@dataclass
class Exercise:
    """The tagged cells of one exercise (indices into the notebook's cells)."""

    title: str
    task: int | None
    stubs: list[int]
    solutions: list[int]
    checks: list[int]


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _python(source: str) -> str:
    """Cell source as plain Python (IPython magics translated)."""
    try:
        ast.parse(source)
        return source
    except SyntaxError:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)


def _title(markdown: str) -> str:
    heading = next((line for line in markdown.splitlines() if line.startswith("#")), "")
    title = re.sub(r"^#+\s*(Exercise\s*:?\s*)?", "", heading).strip()
    return title


def find_exercises(nb, name: str = "notebook") -> list[Exercise]:
    """The exercises of a notebook, from its tags; ValueError when the tags do not pair up."""
    exercises: list[Exercise] = []
    current: Exercise | None = None
    for i, cell in enumerate(nb.cells):
        tags = _tags(cell)
        after_check = current is not None and current.checks and (
            STUB in tags or (SOLUTION in tags and cell.cell_type == "code"))
        if TASK in tags or after_check:
            current = Exercise(title=_title(cell.source) if TASK in tags else "", task=i if TASK in tags else None,
                               stubs=[], solutions=[], checks=[])
            exercises.append(current)
            if TASK in tags:
                continue
        if not {STUB, SOLUTION, CHECK} & set(tags):
            continue
        if current is None:
            current = Exercise(title="", task=None, stubs=[], solutions=[], checks=[])
            exercises.append(current)
        if CHECK in tags:
            if cell.cell_type != "code":
                raise ValueError(f"{name}, cell {i}: tag {CHECK} belongs on a code cell")
            current.checks.append(i)
        if STUB in tags:
            if cell.cell_type != "code":
                raise ValueError(f"{name}, cell {i}: tag {STUB} belongs on a code cell")
            current.stubs.append(i)
        if SOLUTION in tags:
            current.solutions.append(i)
    for k, ex in enumerate(exercises, 1):
        if not ex.checks:
            raise ValueError(f"{name}: exercise {k} ({ex.title or 'untitled'}) has no cell tagged {CHECK}")
        if not ex.stubs and not any(nb.cells[i].cell_type == "code" for i in ex.solutions):
            raise ValueError(f"{name}: exercise {k} ({ex.title or 'untitled'}) has neither a cell tagged "
                             f"{STUB} nor a code cell tagged {SOLUTION} to derive a stub from")
        if not ex.title:
            chapter = next((_title(c.source) for c in nb.cells if c.cell_type == "markdown"
                            and c.source.startswith("# ")), name)
            ex.title = f"{chapter}, exercise {k}" if len(exercises) > 1 else f"{chapter}, exercise"
    return exercises


def defined_names(source: str) -> list[str]:
    """Top-level names a cell defines (functions, classes, assigned names), in order."""
    names: list[str] = []
    for node in ast.parse(_python(source)).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found = [node.name]
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            found = [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]
        else:
            continue
        names += [n for n in found if n not in names]
    return names


def read_names(source: str) -> set[str]:
    """Every name a cell reads."""
    return {n.id for n in ast.walk(ast.parse(_python(source))) if isinstance(n, ast.Name)}


def _stub_function(node: ast.FunctionDef | ast.AsyncFunctionDef, qualname: str) -> ast.AST:
    stub = copy.deepcopy(node)
    docstring = ast.get_docstring(node, clean=False)
    message = ast.Constant(f"write `{qualname}` in the exercise cell")
    body: list[ast.stmt] = [ast.Expr(ast.Constant(docstring))] if docstring else []
    body.append(ast.Raise(exc=ast.Call(ast.Name("NotImplementedError", ast.Load()), [message], []), cause=None))
    stub.body = body
    return stub


def derive_stub(solution: str, needed: set[str]) -> str:
    """A stub from a worked solution: imports, signatures and docstrings, `...` for values."""
    parts: list[str] = []
    values: list[str] = []
    for node in ast.parse(_python(solution)).body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            parts.append(ast.unparse(node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            parts.append(ast.unparse(_stub_function(node, node.name)))
        elif isinstance(node, ast.ClassDef):
            cls = copy.deepcopy(node)
            docstring = ast.get_docstring(node, clean=False)
            cls.body = ([ast.Expr(ast.Constant(docstring))] if docstring else []) + [
                _stub_function(item, f"{node.name}.{item.name}")
                for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
            ]
            if not cls.body:
                cls.body = [ast.Pass()]
            parts.append(ast.unparse(cls))
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            values += [n.id for t in targets for n in ast.walk(t)
                       if isinstance(n, ast.Name) and n.id in needed and n.id not in values]
    header = "# Your solution: complete the code below; the check after it tells you what is still wrong."
    lines = [header] + ["\n\n".join(parts)] if parts else [header]
    lines += [f"{name} = ...  # your answer" for name in values]
    return "\n".join(line for line in lines if line).rstrip() + "\n"


def wrap_check(source: str, title: str, needs: list[str]) -> str:
    """The check cell inside `with check(...)`; ValueError if indenting would change its code."""
    body = source.rstrip("\n")
    wrapped = (f"{CHECK_IMPORT}\n\nwith check({title!r}, needs={needs!r}):\n"
               + textwrap.indent(body, "    ", lambda line: True))
    original, inner = ast.parse(_python(body)), ast.parse(_python(wrapped)).body[-1]
    if ast.dump(ast.Module(body=inner.body, type_ignores=[])) != ast.dump(original):
        raise ValueError(f"check cell of {title!r}: indenting it changes its code (a string spanning lines?)")
    return wrapped


def student_notebook(nb, *, colab_link: str | None = None, name: str = "notebook"):
    """The student version of a notebook (a copy; the input is not changed)."""
    nb = copy.deepcopy(nb)
    exercises = find_exercises(nb, name)
    replace: dict[int, list] = {}
    for ex in exercises:
        stub_sources = [nb.cells[i].source for i in ex.stubs]
        checked = set().union(*(read_names(nb.cells[i].source) for i in ex.checks))
        if not stub_sources:
            solution = "\n\n".join(nb.cells[i].source for i in ex.solutions if nb.cells[i].cell_type == "code")
            stub_sources = [derive_stub(solution, checked)]
            first = ex.solutions[0]
            cell = nbformat.v4.new_code_cell(stub_sources[0], metadata={"tags": [STUB]})
            cell.id = f"{nb.cells[first].get('id', first)}-stub"[:64]
            replace[first] = [cell]
        defined = [n for s in stub_sources for n in defined_names(s)]
        needs = [n for n in dict.fromkeys(defined) if n in checked]
        for i in ex.solutions:
            replace.setdefault(i, [])
        for i in ex.checks:
            cell = nb.cells[i]
            cell.source = wrap_check(cell.source, ex.title, needs)
            cell.outputs, cell.execution_count = [], None
    cells = []
    for i, cell in enumerate(nb.cells):
        cells += replace.get(i, [cell])
    if colab_link:
        text = f"*Student edition.* [Open this notebook in Colab]({colab_link})."
        if exercises:
            text += (" Each exercise has a stub cell to complete; the check cell after it says what is "
                     "still wrong, and passes when your code is right.")
        intro = nbformat.v4.new_markdown_cell(text, metadata={"tags": ["student-edition"]})
        intro.id = STUDENT_CELL_ID
        title = next((i + 1 for i, c in enumerate(cells) if c.cell_type == "markdown"
                      and c.source.startswith("# ")), 0)
        cells.insert(title, intro)
    nb.cells = cells
    return nb


def colab_url(config: dict, branch: str, relative: str) -> str:
    """The Colab address of a notebook of the repository in _config.yml, on `branch`."""
    base = str(config.get("launch_buttons", {}).get("colab_url", "https://colab.research.google.com")).rstrip("/")
    repo = re.sub(r"^https?://github\.com/", "", str(config["repository"]["url"]).rstrip("/"))
    return f"{base}/github/{repo}/blob/{branch}/{relative}"


def write_student_edition(out: Path, branch: str = STUDENT_BRANCH) -> list[Path]:
    """Write the student edition under `out`; returns the chapter notebooks written."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    if out.exists():
        shutil.rmtree(out)
    (out / "book").mkdir(parents=True)
    # The other sources of the book, so that the edition builds as a book of its own.
    for path in (ROOT / "book").iterdir():
        if path.name.startswith(("_", ".")) or path.suffix == ".ipynb":
            continue
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, out / "book" / path.name)
    shutil.copy2(ROOT / "_toc.yml", out / "_toc.yml")
    student_config = copy.deepcopy(config)
    student_config["title"] = f"{config.get('title', 'Book')} (student edition)"
    student_config["repository"]["branch"] = branch
    # Unfinished stubs fail their checks: the edition's HTML shows the stored outputs.
    student_config.setdefault("execute", {})["execute_notebooks"] = "off"
    (out / "_config.yml").write_text(
        "# Student edition, generated by book/_tools/student_edition.py: do not edit.\n"
        + yaml.safe_dump(student_config, sort_keys=False, allow_unicode=True)
    )
    relative_book = str(config["repository"].get("path_to_book", "") or "").strip("/")
    written = []
    for path in chapter_notebooks():
        relative = path.relative_to(ROOT).as_posix()
        link = colab_url(config, branch, f"{relative_book}/{relative}".lstrip("/"))
        nb = student_notebook(nbformat.read(path, as_version=4), colab_link=link, name=relative)
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        written.append(target)
    (out / "README.md").write_text(
        f"# {student_config['title']}\n\n"
        "Generated by `make student` from the book's chapters: every exercise keeps its task, a stub "
        "to complete and its check, without the worked solution. Open a chapter in Jupyter or Colab, "
        "complete each stub and run its check cell.\n\n"
        "Grade a notebook: `python book/_tools/student_edition.py --grade NOTEBOOK.ipynb` in the book's "
        "repository (one line per exercise check).\n"
    )
    return written


@dataclass
class CheckResult:
    """The outcome of one exercise check of an executed notebook."""

    notebook: str
    exercise: str
    passed: bool
    message: str


def check_results(nb, name: str = "notebook") -> list[CheckResult]:
    """Pass or fail of every check cell of an executed notebook, from its outputs."""
    results = []
    for ex in find_exercises(nb, name):
        for i in ex.checks:
            errors = [o for o in nb.cells[i].get("outputs", []) if o.get("output_type") == "error"]
            if nb.cells[i].get("execution_count") is None and not errors:
                results.append(CheckResult(name, ex.title, False, "not run"))
            elif errors:
                text = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errors[0].get("traceback", [])))
                results.append(CheckResult(name, ex.title, False, text.strip().splitlines()[-1] if text.strip()
                                           else f"{errors[0].get('ename')}: {errors[0].get('evalue')}"))
            else:
                results.append(CheckResult(name, ex.title, True, "passed"))
    return results


def grade(paths: list[Path], timeout: int = 600) -> list[CheckResult]:
    """Execute each notebook in a fresh kernel (errors do not stop it) and collect its checks."""
    from nbclient import NotebookClient

    results = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        results += check_results(nb, path.name)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "_build" / "student", help="output folder")
    parser.add_argument("--branch", default=STUDENT_BRANCH, help="branch that publishes the edition")
    parser.add_argument("--grade", nargs="+", type=Path, metavar="NOTEBOOK", help="grade these notebooks")
    args = parser.parse_args(argv)
    try:
        if args.grade:
            missing = [str(p) for p in args.grade if not p.is_file()]
            if missing:
                raise ValueError(f"no such notebook: {', '.join(missing)}")
            results = grade(args.grade)
            for r in results:
                print(f"{'PASS' if r.passed else 'FAIL'}  {r.notebook}: {r.exercise}"
                      + ("" if r.passed else f": {r.message}"))
            print(f"{sum(r.passed for r in results)} of {len(results)} exercise checks passed")
            return 0 if all(r.passed for r in results) else 1
        written = write_student_edition(args.out, args.branch)
    except ValueError as error:
        print(f"student_edition: {error}", file=sys.stderr)
        return 2
    count = sum(len(find_exercises(nbformat.read(p, as_version=4), p.name)) for p in written)
    print(f"wrote the student edition of {len(written)} notebooks ({count} exercises) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
