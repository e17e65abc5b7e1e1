"""The student edition (book/_tools/student_edition.py, `make student`).

Structure tests use small notebooks. The execution test runs, for every chapter of the
student edition, the exercise cells and the earlier cells they depend on (found from the
names each cell reads and defines) in one kernel: the stub as written, whose check must
fail with a one-line message, then the chapter's worked solution pasted into the stub,
whose check must pass.
"""

from __future__ import annotations

import ast
import copy
import re
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_tools"))

import student_edition as se  # noqa: E402
from sync_colab_cells import chapter_notebooks  # noqa: E402

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _notebook(*cells):
    nb = nbformat.v4.new_notebook()
    for kind, source, tags in cells:
        make = nbformat.v4.new_markdown_cell if kind == "md" else nbformat.v4.new_code_cell
        nb.cells.append(make(source, metadata={"tags": list(tags)}))
    return nb


SMALL = [
    ("md", "# 1. Title", []),
    ("code", "import math", []),
    ("md", "## Exercise: a square\n\nWrite `square(x)` and set `answer`.", ["exercise-task"]),
    ("code", 'def square(x):\n    """x times x."""\n    return x * x  # the solution\n\n\nanswer = square(3)\nhelper = 1',
     ["hide-input", "exercise-solution"]),
    ("code", 'assert square(2) == 4, "square(2) should be 4"\nassert answer == 9\nprint("correct")',
     ["exercise-check"]),
    ("md", "So `answer` is 9.", ["exercise-solution"]),
    ("md", "## Summary", []),
]


def test_student_notebook_drops_solutions_and_derives_a_stub():
    nb = _notebook(*SMALL)
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="correct\n")]
    student = se.student_notebook(nb, colab_link="https://colab.example/nb.ipynb")
    sources = [c.source for c in student.cells]
    assert not any("the solution" in s or "So `answer` is 9" in s for s in sources)
    assert "Write `square(x)`" in sources[3]
    stub = student.cells[4]
    assert se.STUB in stub.metadata.tags
    tree = ast.parse(stub.source)
    square = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    assert ast.get_docstring(square) == "x times x."
    assert isinstance(square.body[-1], ast.Raise)
    assert "answer = ..." in stub.source and "helper" not in stub.source  # only what the check reads
    check = student.cells[5]
    assert check.outputs == [] and check.execution_count is None
    assert "with check('a square', needs=['square', 'answer']):" in check.source
    assert "https://colab.example/nb.ipynb" in sources[1]  # right after the title
    assert len(nb.cells) == len(SMALL), "the input notebook must stay unchanged"


def test_stub_and_check_run_in_process():
    student = se.student_notebook(_notebook(*SMALL))
    cells = [c for c in student.cells if c.cell_type == "code"]
    stub, check = cells[1].source, cells[2].source
    from soflow_mini.exercises import ExerciseFailed

    namespace: dict = {}
    exec(cells[0].source + "\n" + stub, namespace)
    with pytest.raises(ExerciseFailed, match="`answer` is still `...`"):
        exec(check, namespace)
    namespace["answer"] = 9
    with pytest.raises(ExerciseFailed, match="not done yet: write `square` in the exercise cell"):
        exec(check, namespace)
    exec(SMALL[3][1], namespace)
    exec(check, namespace)  # the solution passes


def test_explicit_stub_cell_is_kept_as_written():
    cells = list(SMALL)
    cells.insert(3, ("code", "def square(x):\n    ...  # write me", ["exercise-stub"]))
    student = se.student_notebook(_notebook(*cells))
    stubs = [c for c in student.cells if se.STUB in c.metadata.get("tags", [])]
    assert [c.source for c in stubs] == ["def square(x):\n    ...  # write me"]
    assert "needs=['square']" in next(c.source for c in student.cells if se.CHECK in c.metadata.get("tags", []))


def test_bad_markings_are_reported():
    with pytest.raises(ValueError, match="no cell tagged exercise-check"):
        se.student_notebook(_notebook(*SMALL[:4]), name="ch.ipynb")
    with pytest.raises(ValueError, match="neither a cell tagged exercise-stub"):
        se.student_notebook(_notebook(SMALL[2], SMALL[4]), name="ch.ipynb")
    with pytest.raises(ValueError, match="indenting it changes its code"):
        se.wrap_check('text = """two\nlines"""\nassert text', "x", [])


def test_colab_links_point_at_the_student_branch():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = se.colab_url(config, "student", "book/01_introduction.ipynb")
    repo = config["repository"]["url"].removeprefix("https://github.com/")
    assert url == f"https://colab.research.google.com/github/{repo}/blob/student/book/01_introduction.ipynb"


def test_every_chapter_exercise_is_tagged():
    # A chapter's "## Exercise" heading must carry the tags the student edition reads.
    for path in chapter_notebooks():
        nb = nbformat.read(path, as_version=4)
        headings = [i for i, c in enumerate(nb.cells)
                    if c.cell_type == "markdown" and re.search(r"^##+ Exercise", c.source, re.M)]
        exercises = se.find_exercises(nb, path.name)
        assert [e.task for e in exercises] == headings, f"{path.name}: tag each exercise's task, solution and check"


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    return out, se.write_student_edition(out)


def test_write_student_edition(edition):
    out, written = edition
    assert [p.name for p in written] == [p.name for p in chapter_notebooks()]
    config = yaml.safe_load((out / "_config.yml").read_text())
    assert config["repository"]["branch"] == se.STUDENT_BRANCH
    assert config["execute"]["execute_notebooks"] == "off"
    assert (out / "_toc.yml").exists() and (out / "book" / "assets" / "digits_dit.pt").exists()
    for path in written:
        nb = nbformat.read(path, as_version=4)
        assert not any(se.SOLUTION in c.metadata.get("tags", []) for c in nb.cells), path.name
        intro = next(c for c in nb.cells if c.get("id") == se.STUDENT_CELL_ID)
        assert f"/blob/{se.STUDENT_BRANCH}/book/{path.name})" in intro.source


# ------------------------------------------------------------------ execution of the checks
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef,
           ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _stored(node) -> set[str]:
    """Names a statement binds in its own scope (not inside functions, classes, comprehensions);
    the base name of an attribute or item it assigns counts too (it changes that object)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    names: set[str] = set()
    todo = [node]
    while todo:
        item = todo.pop()
        if item is not node and isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(item.name)
            continue
        if item is not node and isinstance(item, _SCOPES):
            continue
        if isinstance(item, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in item.names}
        elif isinstance(item, ast.Name) and isinstance(item.ctx, (ast.Store, ast.Del)):
            names.add(item.id)
        elif isinstance(item, (ast.Attribute, ast.Subscript)) and isinstance(item.ctx, ast.Store):
            base = item.value
            while isinstance(base, (ast.Attribute, ast.Subscript)):
                base = base.value
            if isinstance(base, ast.Name):
                names.add(base.id)
        todo += list(ast.iter_child_nodes(item))
    return names


def _free(node, bound: frozenset = frozenset()) -> set[str]:
    """Names a node reads that no enclosing function or comprehension inside the cell binds."""
    if isinstance(node, ast.Name):
        return {node.id} - bound if isinstance(node.ctx, ast.Load) else set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        a = node.args
        outer = a.defaults + [d for d in a.kw_defaults if d] + getattr(node, "decorator_list", [])
        params = {x.arg for x in a.posonlyargs + a.args + a.kwonlyargs + [a.vararg, a.kwarg] if x}
        body = node.body if isinstance(node.body, list) else [node.body]
        local = params | set().union(*(_stored(b) for b in body)) | {getattr(node, "name", "")}
        return set().union(*(_free(d, bound) for d in outer), *(_free(b, bound | local) for b in body))
    if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
        targets = set().union(*(_stored(g.target) for g in node.generators))
        first = _free(node.generators[0].iter, bound)
        inner = bound | targets
        rest = [g.iter for g in node.generators[1:]] + [c for g in node.generators for c in g.ifs]
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        return first.union(*(_free(x, inner) for x in rest + parts))
    return set().union(*(_free(child, bound) for child in ast.iter_child_nodes(node)))


def _walk_block(stmts, reads: set[str], binds: set[str]) -> None:
    """Statements in order: a name counts as read only if read before the cell binds it."""
    for stmt in stmts:
        if isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                reads |= _free(item.context_expr) - binds
                binds |= _stored(item.optional_vars) if item.optional_vars else set()
            _walk_block(stmt.body, reads, binds)
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            reads |= _free(stmt.iter) - binds
            binds |= _stored(stmt.target)
            _walk_block(stmt.body + stmt.orelse, reads, binds)
        elif isinstance(stmt, (ast.If, ast.While)):
            reads |= _free(stmt.test) - binds
            _walk_block(stmt.body + stmt.orelse, reads, binds)
        elif isinstance(stmt, ast.Try):
            _walk_block(stmt.body + [s for h in stmt.handlers for s in h.body] + stmt.orelse + stmt.finalbody,
                        reads, binds)
        else:
            reads |= _free(stmt) - binds
            binds |= _stored(stmt)


def _scope(source: str) -> tuple[set[str], set[str]]:
    """(names the cell reads before binding them, names it binds at its top level)."""
    reads: set[str] = set()
    binds: set[str] = set()
    _walk_block(ast.parse(se._python(source)).body, reads, binds)
    return reads, binds


def _program(student, solutions: dict[int, str]):
    """Cells to run in one kernel: dependencies, then per exercise stub, check, solution, check.

    Returns the notebook and, per exercise, the indices of its failing and passing checks."""
    cells, code = student.cells, [i for i, c in enumerate(student.cells) if c.cell_type == "code"]
    exercises = se.find_exercises(student)
    first = min(ex.stubs[0] for ex in exercises)
    wanted = set().union(*(_scope(cells[i].source)[0] for ex in exercises for i in ex.stubs + ex.checks))
    wanted |= set().union(*(_scope(s)[0] for s in solutions.values()))
    setup = next(i for i in code if "nbval-skip" not in cells[i].metadata.get("tags", []))
    deps = []
    for i in reversed([i for i in code if i < first]):
        reads, binds = _scope(cells[i].source)
        if i == setup or ("nbval-skip" not in cells[i].metadata.get("tags", []) and binds & wanted):
            deps.append(i)
            wanted |= reads
    run = nbformat.v4.new_notebook(metadata=student.metadata)
    take = lambda indices: [copy.deepcopy(cells[i]) for i in indices]  # noqa: E731
    run.cells = take(sorted(deps))
    expect = []
    for k, ex in enumerate(exercises):
        run.cells += take(ex.stubs + ex.checks)
        failing = len(run.cells) - 1
        run.cells += [nbformat.v4.new_code_cell(solutions[k])] + take(ex.checks)
        expect.append((ex.title, failing, len(run.cells) - 1))
    return run, len(deps), expect


def _chapters_with_exercises():
    return [p for p in chapter_notebooks() if se.find_exercises(nbformat.read(p, as_version=4), p.name)]


@pytest.mark.parametrize("chapter", _chapters_with_exercises(), ids=lambda p: p.stem)
def test_checks_fail_on_stubs_and_pass_on_the_solutions(chapter, edition):
    from nbclient import NotebookClient

    out, _ = edition
    book = nbformat.read(chapter, as_version=4)
    solutions = {k: "\n\n".join(book.cells[i].source for i in ex.solutions if book.cells[i].cell_type == "code")
                 for k, ex in enumerate(se.find_exercises(book, chapter.name))}
    student_path = out / chapter.relative_to(ROOT)
    run, n_deps, expect = _program(nbformat.read(student_path, as_version=4), solutions)
    NotebookClient(run, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(student_path.parent)}}).execute()
    for title, failing, passing in expect:
        errors = [o for o in run.cells[failing].outputs if o.output_type == "error"]
        assert errors, f"{chapter.name}: the check of {title!r} passed on the empty stub"
        lines = [ANSI.sub("", line) for line in errors[0].traceback]
        assert errors[0].ename == "ExerciseFailed", f"{chapter.name}: {errors[0].ename}: {errors[0].evalue}"
        assert len(lines) == 1 and "Traceback" not in lines[0] and title in lines[0], lines
        assert re.search(r"not done yet: write `?\w+(\.\w+)?`?|is still `\.\.\.`", lines[0]), lines[0]
        bad = [f"{o.ename}: {ANSI.sub('', ''.join(o.traceback))[-800:]}" for c in run.cells[:n_deps]
               for o in c.get("outputs", []) if o.output_type == "error"]
        assert not bad, f"{chapter.name}: a cell the exercise depends on failed: {bad}"
        passed = [o for o in run.cells[passing].outputs if o.output_type == "error"]
        assert not passed, f"{chapter.name}: the solution fails its check: {ANSI.sub('', ''.join(passed[0].traceback))}"
