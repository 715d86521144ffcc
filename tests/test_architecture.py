"""The shape of the code: no import cycles, small modules, a documented public API, a CLI that
starts without torch."""

import ast
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import headstart

PACKAGE = Path(headstart.__file__).parent
MAX_MODULE_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """Every headstart module `path` imports, anywhere in the file (lazy and type-only imports too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # `from . import x` may name a module; `from .m import y` names module m.
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    graph.pop("headstart")  # the package facade re-exports the API lazily; nothing imports it back
    assert len(graph) > 30 and graph["headstart.classifier"]  # the walk sees the package
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_export_and_report_never_reach_the_classifier():
    graph = import_graph()
    reached, todo = set(), ["headstart.export", "headstart.evaluation.report"]
    while todo:
        for nxt in graph[todo.pop()] - reached:
            reached.add(nxt)
            todo.append(nxt)
    assert "headstart.classifier" not in reached and "headstart.cli" not in reached


def test_modules_stay_small():
    sizes = {module_name(p): len(p.read_text("utf-8").splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


PUBLIC_API = [
    headstart.train,
    headstart.load,
    headstart.Classifier,
    headstart.Classifier.train,
    headstart.Classifier.export,
    headstart.Predictor,
    headstart.Predictions,
    headstart.Evaluation,
    headstart.HParams,
    headstart.TrainingRun,
]


@pytest.mark.parametrize("member", PUBLIC_API, ids=lambda m: m.__qualname__)
def test_public_api_is_documented_with_a_runnable_example(member):
    doc = inspect.getdoc(member) or ""
    assert ">>> " in doc and "# doctest: +SKIP" not in doc, "an example that runs (the doctests run it)"
    if inspect.isfunction(member) or inspect.ismethod(member):
        assert "Args:" in doc and "Returns:" in doc
    else:
        assert "Args:" in doc or "Attributes:" in doc


def test_export_module_function_is_documented():
    from headstart.export import export

    doc = inspect.getdoc(export)
    assert "Args:" in doc and "Returns:" in doc and ">>> " in doc


def test_cli_starts_without_importing_torch():
    code = "import sys; from headstart.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_predicting_evaluating_and_reporting_never_import_torch(small_hymenoptera, tmp_path):
    """torch (1.7 s, 220 MB to import) loads only to train, fine-tune or export: a bundle whose
    backbone graph is in the cache predicts, evaluates and reports on onnxruntime and numpy."""
    clf = headstart.train(small_hymenoptera, epochs=3, out=tmp_path / "model", quiet=True)
    bee = sorted((small_hymenoptera / "val" / "bees").iterdir())[0]
    expected = clf.predict(bee)[0].probabilities
    code = f"""
import json, sys
import headstart.inference
import headstart
assert "torch" not in sys.modules, "import"
clf = headstart.load({str(tmp_path / "model")!r})
p = clf.predict({str(bee)!r})[0].probabilities
accuracy = clf.evaluate().metrics.accuracy
clf.report({str(tmp_path / "report")!r})
print(json.dumps({{"torch": [m for m in sys.modules if m.split(".")[0] == "torch"], "p": p, "accuracy": accuracy}}))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["torch"] == []
    assert out["p"] == pytest.approx(expected, abs=1e-5)  # the numpy head gives torch's answers
    assert out["accuracy"] == pytest.approx(clf.metrics.accuracy)
    assert "confusion matrix" in (tmp_path / "report" / "report.html").read_text("utf-8")


def test_training_a_linear_head_never_imports_torch(small_hymenoptera, tmp_path):
    """The default head (lbfgs) trains on cached features with numpy alone; torch loads only for
    --solver adamw, fine-tuning, or a backbone graph not yet exported (exported here first)."""
    headstart.train(small_hymenoptera, quiet=True)  # the backbone's ONNX graph into the session's cache
    code = f"""
import json, sys
from headstart.cli import main
assert main(["train", {str(small_hymenoptera)!r}, "--out", {str(tmp_path / "m")!r}, "--quiet"]) == 0
print(json.dumps([m for m in sys.modules if m.split(".")[0] == "torch"]))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    assert meta["history"]["l2"] and (tmp_path / "m" / "report.html").is_file()


ROOT = PACKAGE.parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(source: Path) -> subprocess.CompletedProcess:
    """import-linter's contracts (pyproject.toml) on the package under `source`."""
    env = {**os.environ, "PYTHONPATH": str(source)}
    config = ROOT / "pyproject.toml"
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--config", str(config)], capture_output=True, text=True, env=env, cwd=source
    )


def test_the_layer_contracts_hold():
    result = lint_imports(PACKAGE.parent)
    assert result.returncode == 0 and "2 kept, 0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("inference/head.py", "from ..evaluation import metrics"),  # inference below evaluation: lazily, in a function
        ("hparams.py", "from .data import augment"),  # the foundation imports no layer, type hints included
    ],
)
def test_the_layer_contracts_catch_an_upward_import(tmp_path, module, line):
    shutil.copytree(PACKAGE, tmp_path / "headstart")
    path = tmp_path / "headstart" / module
    guard = "def _upward():\n    " if module.startswith("inference") else "if TYPE_CHECKING:\n    "
    path.write_text(path.read_text() + f"\n\n{guard}{line}  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1 and "1 broken" in result.stdout, result.stdout


def public_definitions() -> tuple[list[str], list[str]]:
    """(documented, undocumented) public definitions: module-level functions and classes, and the
    public methods of public classes."""
    documented, missing = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text("utf-8")).body:
            if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) or node.name.startswith("_"):
                continue
            members = [node] + [
                m for m in getattr(node, "body", []) if isinstance(m, ast.FunctionDef) and not m.name.startswith("_")
            ] * isinstance(node, ast.ClassDef)
            for member in members:
                (documented if ast.get_docstring(member) else missing).append(f"{module_name(path)}.{member.name}")
    return documented, missing


def test_public_definitions_are_documented():
    documented, missing = public_definitions()
    assert len(documented) > 400  # the walk sees the package
    assert len(documented) / (len(documented) + len(missing)) >= 0.9, missing


def test_the_makefile_installs_what_the_backbone_registry_lists():
    from headstart.backbones import BACKBONES, weights_requirements

    makefile = (ROOT / "Makefile").read_text()
    assert "headstart backbones --requirements" in makefile
    assert not any(requirement.split("==")[0] in makefile for requirement in weights_requirements())  # no copy
    requirements = weights_requirements()
    assert all("==" in r for r in requirements)  # pinned
    assert {spec.weights.requirement for spec in BACKBONES.values()} == set(requirements)


def test_the_readme_tables_follow_the_registries():
    from headstart.evaluation.figures import REPORT_FIGURES
    from headstart.export import EXPORT_FORMATS

    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "tables.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr  # the backbones table is generated from the registry
    readme = (ROOT / "README.md").read_text("utf-8")
    formats = readme.split("| format | file |")[1].split("\n\n")[0]
    assert {line.split("`")[1] for line in formats.splitlines() if line.startswith("| `")} == set(EXPORT_FORMATS)
    report = readme.split("| file | what |")[1].split("\n\n")[0]
    listed = {name.removesuffix(".png") for name in re.findall(r"`([a-z_]+\.png)`", report)}
    assert listed == set(REPORT_FIGURES)
