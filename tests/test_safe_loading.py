"""Safe loading, enforced on the source: no unsafe YAML/torch/pickle loads, no shell strings, no
listening on every interface by default. An AST walk over ``autocompress/`` (and ``scripts/``,
``benchmarks/``), so a new call site that breaks a rule fails the suite with its file and line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKED = [ROOT / "autocompress", ROOT / "benchmarks", ROOT / "scripts"]

UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
UNSAFE_CALLS = {
    "yaml.load": "use yaml.safe_load",
    "yaml.unsafe_load": "use yaml.safe_load",
    "yaml.full_load": "use yaml.safe_load",
    "yaml.load_all": "use yaml.safe_load_all",
    "os.system": "no shell strings: subprocess.run([...]) with a list",
    "os.popen": "no shell strings: subprocess.run([...]) with a list",
    "pd.read_pickle": "pickles run code on load",
    "pandas.read_pickle": "pickles run code on load",
    "eval": "no eval of data",
    "exec": "no exec of data",
}
ANY_INTERFACE = {"0.0.0.0", "::", "[::]"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def violations(source: str, filename: str = "<src>") -> list[str]:
    """Every broken rule in ``source``, as ``file:line: what (fix)``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for mod in mods:
                if mod.split(".")[0] in UNSAFE_MODULES:
                    found.append(f"{where}: imports {mod} (pickle-like formats run code on load)")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name in UNSAFE_CALLS:
                loader = _kw(node, "Loader")
                if name == "yaml.load" and loader is not None and _dotted(loader).endswith("SafeLoader"):
                    continue
                found.append(f"{where}: {name}() ({UNSAFE_CALLS[name]})")
            elif name == "torch.load" or name.endswith(".torch.load"):
                if not _is_true(_kw(node, "weights_only")):
                    found.append(f"{where}: torch.load without weights_only=True")
            elif name.split(".")[-1] == "load" and name.split(".")[0] in ("np", "numpy"):
                if _is_true(_kw(node, "allow_pickle")):
                    found.append(f"{where}: {name}(allow_pickle=True)")
            if _is_true(_kw(node, "shell")):
                found.append(f"{where}: {name}(shell=True) (pass an argument list)")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in ANY_INTERFACE:
            found.append(f"{where}: binds every interface ({node.value!r}); default to 127.0.0.1")
    return found


def _files() -> list[Path]:
    return sorted(p for d in CHECKED if d.is_dir() for p in d.rglob("*.py"))


def test_the_package_loads_and_runs_nothing_unsafely() -> None:
    files = _files()
    assert any(p.name == "supernet.py" for p in files)  # the walk really covers the package
    found = [v for p in files for v in violations(p.read_text(), str(p.relative_to(ROOT)))]
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "import yaml\nyaml.load(open('x'))",
        "import yaml\nyaml.load(text, Loader=yaml.Loader)",
        "import yaml\nyaml.unsafe_load(text)",
        "import torch\ntorch.load('w.pt')",
        "import torch\ntorch.load('w.pt', weights_only=False)",
        "import pickle\n",
        "from joblib import load\n",
        "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
        "import subprocess\nsubprocess.run(f'ls {path}', shell=True)",
        "import os\nos.system('rm ' + name)",
        "import pandas as pd\npd.read_pickle(path)",
        "app.run(host='0.0.0.0')",
        "eval(text)",
    ],
)
def test_the_checker_catches_each_unsafe_form(source: str) -> None:
    assert violations(source), source


@pytest.mark.parametrize(
    "source",
    [
        "import yaml\nyaml.safe_load(text)",
        "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
        "import torch\ntorch.load(p, map_location='cpu', weights_only=True)",
        "import subprocess\nsubprocess.run(['ls', path], check=True)",
        "serve(host='127.0.0.1')",
    ],
)
def test_the_checker_accepts_the_safe_forms(source: str) -> None:
    assert not violations(source), violations(source)
