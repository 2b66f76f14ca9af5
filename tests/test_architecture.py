"""The package's shape: no import cycles, shared code never imports a method, no module over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import medgap

PACKAGE = Path(medgap.__file__).parent
METHODS = ("medgap.harmonize", "medgap.transfer", "medgap.synthesize")
# the command line, the demo and the config reference put the methods together; everything else is shared or
# one method
ASSEMBLERS = ("medgap.cli", "medgap.__main__", "medgap.demo", "medgap.adapters", "medgap.config_docs")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module -> the medgap modules it imports at import time (module level, not inside functions)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.parse(path.read_text()).body:  # top level only: lazy imports cannot cycle
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            found |= {t for t in targets if t in modules and t != name}
        graph[name] = found
    return graph


def test_no_import_cycles():
    graph = _imports()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def _all_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_shared_code_never_imports_a_method():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        if name.startswith(METHODS) or name.startswith(ASSEMBLERS):
            continue
        wrong += [f"{name} imports {m}" for m in _all_imports(path) if m.startswith(METHODS)]
    assert not wrong, wrong


def test_methods_never_import_each_other():
    wrong = []
    for path in PACKAGE.rglob("*.py"):
        name = _module_name(path)
        own = next((m for m in METHODS if name.startswith(m)), None)
        if own:
            wrong += [f"{name} imports {m}" for m in _all_imports(path) if m.startswith(METHODS) and not m.startswith(own)]
    assert not wrong, wrong


def test_no_module_over_500_lines():
    long = {_module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 500}
    assert not long, long


def test_the_three_trainers_share_one_signature_and_result():
    import inspect

    from medgap.harmonize.train import train as harmonize
    from medgap.synthesize.train import train as synthesize
    from medgap.training.contract import TrainResult
    from medgap.transfer.trainer import train as transfer

    shared = ["cfg", "data", "out", "device", "resume", "overwrite", "progress"]
    for trainer in (harmonize, transfer, synthesize):
        signature = inspect.signature(trainer)
        assert list(signature.parameters)[: len(shared)] == shared, trainer.__module__
        assert [p.kind for p in signature.parameters.values()][3:] == [inspect.Parameter.KEYWORD_ONLY] * (
            len(signature.parameters) - 3)
        assert signature.parameters["resume"].default is True and signature.parameters["device"].default == "auto"
        assert signature.return_annotation in (TrainResult, "TrainResult"), trainer.__module__
