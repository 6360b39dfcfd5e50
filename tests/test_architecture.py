"""The shape of the code: no import cycle inside the package (at module level or inside functions), and
every codec module registers a codec."""
import ast
import importlib
import pkgutil
from pathlib import Path

import neuralcodecs
from neuralcodecs import codecs as codecs_pkg
from neuralcodecs.registry import get_entry, list_codecs

SRC = Path(neuralcodecs.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports anywhere in its body (function-local imports included, and
    the packages whose __init__ an import runs on the way). `from pkg import name` counts as importing
    pkg.name when that is a module, else pkg."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[:len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            # importing a.b.c runs a/b/__init__ first: an edge to each package on the way that the importer is
            # not already inside (its own packages are imported before it is)
            parents = {".".join(t.split(".")[:i]) for t in targets for i in range(1, t.count(".") + 1)}
            parents = {p for p in parents if not (name + ".").startswith(p + ".")}
            edges |= {t for t in set(targets) | parents if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_codec_module_registers_a_codec():
    registered = {get_entry(n).cls.__module__ for n in list_codecs()}
    for info in pkgutil.iter_modules(codecs_pkg.__path__):
        module = importlib.import_module(f"neuralcodecs.codecs.{info.name}")
        defines = any(getattr(v, "__module__", None) == module.__name__ and isinstance(v, type)
                      and issubclass(v, neuralcodecs.Codec) for v in vars(module).values())
        if defines:
            assert module.__name__ in registered, f"{module.__name__} defines a codec but registers none"


def test_every_codec_class_cites_its_method():
    # help(codec) shows the paper or standard and the data flow: each class has a docstring of its own
    missing = [n for n in list_codecs() if not (get_entry(n).cls.__dict__.get("__doc__") or "").strip()]
    assert not missing, f"codec classes without a docstring: {missing}"


def test_every_codec_says_what_its_quality_means():
    from neuralcodecs.registry import get_entry, list_codecs

    missing = [n for n in list_codecs() if not get_entry(n).cls.quality_meaning.strip()]
    assert not missing, f"codecs without quality_meaning: {missing}"
