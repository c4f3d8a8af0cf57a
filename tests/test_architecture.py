"""The architecture rules that can be enforced, enforced (docs/internals.md,
"Dependency rules").

Read statically: every module of `probes` and `harness` is parsed with `ast`
(nothing is imported), and each import is listed as module-level (runs when the
module is imported, class bodies included), function-level (a lazy import
inside a function) or type-only (under `if TYPE_CHECKING:`).

- No import cycle, whatever the kind of import: lazy and type-only imports
  hide a cycle from the interpreter, not from the reader; the two modules still
  cannot be understood, tested or changed one without the other. (The lazy CLI
  is not a cycle: `harness/cli/__init__.py` names its command modules as
  strings.)
- `probes` never imports `harness`: the probes are usable without the harness
  (the dependency runs one way, harness -> probes).

Importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`; that implicit
parent import is not an edge (a package that re-exports its modules would
otherwise always be a cycle).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("probes", "harness")

# Cycles being removed elsewhere; each entry is one line to delete once its
# cycle is gone (test_known_cycles_still_exist then says so).
KNOWN_CYCLES: list[frozenset[str]] = []


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    line: int
    kind: str           # "module-level" | "function-level" | "type-only"

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst} ({self.kind}, {self.src.replace('.', '/')}.py:{self.line})"


def module_files() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = f
    return mods


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """(node, kind) for every import, walking the tree by hand so that function
    bodies and TYPE_CHECKING blocks are known."""
    def walk(node, kind):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.body:
                    yield from walk_one(sub, "type-only")
                for sub in child.orelse:
                    yield from walk_one(sub, kind)
                continue
            yield from walk_one(child, kind)

    def walk_one(node, kind):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, kind
        if kind == "module-level" and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            kind = "function-level"
        yield from walk(node, kind)

    yield from walk(tree, "module-level")


def import_edges() -> list[Edge]:
    mods = module_files()
    edges = []
    for name, f in mods.items():
        is_pkg = f.name == "__init__.py"
        tree = ast.parse(f.read_text(), filename=str(f))
        for node, kind in _imports(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[:len(base) - (node.level - 1)]
                    stem = ".".join(base + ([node.module] if node.module else []))
                else:
                    stem = node.module or ""
                for alias in node.names:
                    sub = f"{stem}.{alias.name}"
                    targets.append(sub if sub in mods else stem)   # `from pkg import module` or a name
            for t in targets:
                while t and t not in mods and "." in t:            # `import a.b.c` of a non-module: its package
                    t = t.rsplit(".", 1)[0]
                if t in mods and t != name:
                    edges.append(Edge(name, t, node.lineno, kind))
    return edges


def strongly_connected(edges: list[Edge]) -> list[frozenset[str]]:
    """Tarjan's algorithm (iterative); only components with a cycle."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.src, set()).add(e.dst)
        graph.setdefault(e.dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while True:
                        m = stack.pop()
                        on_stack.discard(m)
                        comp.add(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))
    return out


def describe(comp: frozenset[str], edges: list[Edge]) -> str:
    inside = sorted((e for e in edges if e.src in comp and e.dst in comp), key=str)
    return "cycle among " + ", ".join(sorted(comp)) + ":\n    " + "\n    ".join(map(str, inside))


# ---- the rules ------------------------------------------------------------------------------

def test_no_import_cycle():
    edges = import_edges()
    cycles = [c for c in strongly_connected(edges) if c not in KNOWN_CYCLES]
    assert not cycles, "\n".join(describe(c, edges) for c in cycles)


def test_known_cycles_still_exist():
    unknown = [sorted(c) for c in KNOWN_CYCLES if not c <= set(module_files())]
    assert not unknown, f"KNOWN_CYCLES names modules that do not exist: {unknown}"
    found = strongly_connected(import_edges())
    gone = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not gone, f"cycle(s) {gone} are gone: delete their line in KNOWN_CYCLES"


def test_probes_never_import_harness():
    bad = [str(e) for e in import_edges() if e.src.split(".")[0] == "probes" and e.dst.split(".")[0] == "harness"]
    assert not bad, "probes must not depend on harness:\n    " + "\n    ".join(bad)


# ---- the checker itself, on made-up packages whose answer is known ----------------------------

def _edges_of(tmp_path, monkeypatch, files: dict[str, str]) -> list[Edge]:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    return import_edges()


def test_checker_sees_lazy_relative_and_type_only_imports(tmp_path, monkeypatch):
    edges = _edges_of(tmp_path, monkeypatch, {
        "probes/__init__.py": "",
        "probes/a.py": "from . import b\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import probes.c\n",
        "probes/b.py": "def f():\n    from probes.a import thing\n",
        "probes/c.py": "import probes.a\nfrom harness.x import y\n",
        "harness/__init__.py": "",
        "harness/x.py": "class K:\n    import probes.c as c\n",
    })
    got = {(e.src, e.dst, e.kind) for e in edges}
    assert got == {("probes.a", "probes.b", "module-level"), ("probes.a", "probes.c", "type-only"),
                   ("probes.b", "probes.a", "function-level"), ("probes.c", "probes.a", "module-level"),
                   ("probes.c", "harness.x", "module-level"), ("harness.x", "probes.c", "module-level")}
    # a, b, c form one component (a -> c type-only, c -> a); harness.x <-> probes.c joins it
    assert strongly_connected(edges) == [frozenset({"probes.a", "probes.b", "probes.c", "harness.x"})]


# ---- the repository cites only itself --------------------------------------------------------

# Files outside the project that code and docs once cited; the contract is docs/contract.md.
OUTSIDE_DOCS = ("DESIGN" + ".md", "FIELD" + ".md", "../" + "shared/")


def test_no_citation_of_documents_outside_the_repository():
    import subprocess
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    hits = []
    for rel in files.decode().split("\0"):
        path = ROOT / rel
        if not rel or not path.is_file() or path.suffix not in (".py", ".md", ".toml", ".sh", ".yaml", ".cfg", ""):
            continue
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if any(doc in line for doc in OUTSIDE_DOCS):
                hits.append(f"{rel}:{n}: {line.strip()[:100]}")
    assert not hits, "cite docs/contract.md (or docs/lab.md), not a file outside the repository:\n  " + \
        "\n  ".join(hits)
