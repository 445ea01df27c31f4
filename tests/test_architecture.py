"""The layering rules of DESIGN.md and STYLE.md §3, checked on the source (AST imports)."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import goworld

ROOT = Path(__file__).resolve().parent.parent
ROLES = ("dispatcher", "gate", "game", "lockstep")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def top(name: str) -> str:
    return name.split(".")[0]


def test_roles_never_import_each_other() -> None:
    for role in ROLES:
        for path in (ROOT / role).rglob("*.py"):
            others = {top(m) for m in imports_of(path)} & (set(ROLES) - {role})
            assert not others, f"{path.relative_to(ROOT)} imports {others}"


def test_the_library_imports_no_role_and_cli_imports_no_role() -> None:
    for path in [*(ROOT / "goworld").rglob("*.py"), ROOT / "cli.py"]:
        roles = {top(m) for m in imports_of(path)} & set(ROLES)
        assert not roles, f"{path.relative_to(ROOT)} imports {roles}"


def test_protocol_core_is_free_of_io() -> None:
    forbidden = {"asyncio", "socket", "selectors", "grpc", "websockets", "aiokcp", "ssl"}
    for path in (ROOT / "goworld" / "proto").rglob("*.py"):
        bad = {top(m) for m in imports_of(path)} & forbidden
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_entities_see_neither_network_nor_storage() -> None:
    forbidden = {"asyncio", "socket", "grpc", "websockets", "aiokcp", "sqlite3", "redis", "pymongo"}
    for path in (ROOT / "goworld" / "entity").rglob("*.py"):
        mods = imports_of(path)
        bad = {top(m) for m in mods} & forbidden
        bad |= {m for m in mods if m.startswith(("goworld.storage", "goworld.kvdb", "goworld.net"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_examples_import_only_goworld() -> None:
    allowed_stdlib = set(sys.stdlib_module_names)
    for path in (ROOT / "examples").rglob("*.py"):
        for mod in imports_of(path):
            assert top(mod) == "goworld" or top(mod) in allowed_stdlib, (
                f"{path.relative_to(ROOT)} imports {mod}"
            )
            assert mod == "goworld" or not mod.startswith("goworld."), (
                f"{path.relative_to(ROOT)} imports {mod}: use the goworld facade"
            )


def test_import_goworld_loads_no_network_driver() -> None:
    code = (
        "import sys, goworld; bad = [m for m in ('grpc', 'websockets', 'aiokcp', 'redis', "
        "'pymongo', 'sqlite3') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_goworld_loads_neither_grpc_nor_protobuf() -> None:
    """The facade reaches the cluster through the runtime (``game.runtime`` builds the
    envelopes), so game code and tools importing goworld load neither gRPC nor protobuf."""
    code = (
        "import sys, goworld; bad = [m for m in sys.modules if m == 'grpc' "
        "or m.startswith(('grpc.', 'google.protobuf'))]; print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_loading_the_generated_grpc_modules_keeps_the_rpc_decorator() -> None:
    """``goworld.rpc`` is the decorator and a subpackage: the game's runtime imports the
    subpackage after game code has imported goworld, which must not rebind the name."""
    code = (
        "import goworld; from goworld.entity.registry import rpc; import game.runtime; "
        "import goworld.rpc.cluster_pb2; assert goworld.rpc is rpc, goworld.rpc"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_facade_and_entities_build_no_cluster_envelopes() -> None:
    paths = [ROOT / "goworld" / "__init__.py", ROOT / "goworld" / "api.py"]
    for path in [*paths, *(ROOT / "goworld" / "entity").rglob("*.py")]:
        bad = {m for m in imports_of(path) if m.startswith(("goworld.cluster", "goworld.rpc"))}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}: go through the runtime"


def test_public_api_is_pinned() -> None:
    assert sorted(goworld.__all__) == sorted(
        [
            "__version__", "Entity", "Space", "Vector3", "MapAttr", "ListAttr", "GameClient",
            "rpc", "CLIENT", "ALL_CLIENTS", "PERSISTENT", "RateLimiter", "activate_registry",
            "register_entity", "register_space", "register_service", "create_entity_locally",
            "create_entity_on_game", "create_entity_anywhere", "create_space_locally",
            "create_space_on_game", "create_space_anywhere", "load_entity_on_game",
            "load_entity_anywhere", "load_entity_locally", "exists", "get_entity", "get_space",
            "entities", "get_game_id", "get_online_games", "get_nil_space_id", "get_nil_space",
            "call", "call_nil_spaces", "create_lockstep_room", "call_service_any", "call_service_all",
            "call_service_shard_index", "call_service_shard_key", "get_service_entity_id",
            "get_service_shard_count", "check_service_entities_ready", "kvdb_get", "kvdb_put",
            "kvdb_get_or_put", "kvdb_get_range", "post", "add_callback", "add_timer",
            "register_crontab", "map_attr", "list_attr",
        ]
    )
    for name in goworld.__all__:
        assert hasattr(goworld, name), name


def test_lint_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--quiet", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_types_are_strict(tmp_path: Path) -> None:
    """mypy, configured in pyproject.toml: strict on goworld, dispatcher, gate, game and the CLI."""
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "pyproject.toml", "--cache-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


#: Modules written by protoc: the only ones mypy may be relaxed for.
GENERATED = ("goworld.rpc.cluster_pb2", "goworld.lockstep.lockstep_pb2")


def test_typing_config_stays_strict() -> None:
    """The mypy config checks the four packages and the CLI strictly; only generated code is
    exempt."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert config["strict"] is True
    assert set(config["files"]) == {"goworld", "dispatcher", "gate", "game", "lockstep", "cli.py"}
    relaxing = {"ignore_errors", "disallow_untyped_defs", "disallow_incomplete_defs", "check_untyped_defs",
                "disallow_any_generics", "warn_return_any", "strict", "disallow_untyped_calls"}
    for override in config.get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        ours = [m for m in modules if top(m) in {"goworld", *ROLES} and not m.startswith(GENERATED)]
        assert not (ours and relaxing & set(override)), f"strictness relaxed for {ours}: {override}"


def _python_files() -> list[Path]:
    files = [p for d in ("goworld", *ROLES) for p in (ROOT / d).rglob("*.py")]
    return [p for p in files if "_pb2" not in p.name]


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_names_defined(tree: ast.AST) -> set[str]:
    """Private attributes a module gives its objects: ``self._x = ...``, methods and class
    attributes named ``_x``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and _is_private(item.name):
                    names.add(item.name)
                targets = item.targets if isinstance(item, ast.Assign) else (
                    [item.target] if isinstance(item, ast.AnnAssign) else []
                )
                names.update(t.id for t in targets if isinstance(t, ast.Name) and _is_private(t.id))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
            and _is_private(node.attr)
        ):
            names.add(node.attr)
    return names


def test_no_private_member_is_reached_across_packages() -> None:
    """A package's private members (``_x`` on its objects) are used inside that package only:
    what another package needs is public API (DESIGN.md, import rules). A name that the
    reaching package also defines privately is not flagged (the AST cannot tell whose it is)."""
    trees = {path: ast.parse(path.read_text(), str(path)) for path in _python_files()}
    defined: dict[Path, set[str]] = {}
    for path, tree in trees.items():
        defined.setdefault(path.parent, set()).update(_private_names_defined(tree))
    violations = []
    for path, tree in trees.items():
        own = defined[path.parent]
        foreign = set().union(*(names for pkg, names in defined.items() if pkg != path.parent))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in foreign and node.attr not in own:
                violations.append(f"{path.relative_to(ROOT)}:{node.lineno}: .{node.attr}")
    assert not violations, "private members reached from another package:\n" + "\n".join(violations)


def test_game_tier_functions_are_short() -> None:
    """No function in game/ or dispatcher/ over 60 lines: split by step, as ``game/__main__``."""
    long = []
    for d in ("game", "dispatcher"):
        for path in (ROOT / d).rglob("*.py"):
            if "_pb2" in path.name:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > 60:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines} lines")
    assert not long, "\n".join(long)


def test_every_error_is_in_the_one_tree_and_documented() -> None:
    """Each public exception class of the project descends from GoWorldError (directly or
    through another of ours) and appears in goworld.errors' docstring tree."""
    import goworld.errors

    doc = goworld.errors.__doc__ or ""
    ours = {"GoWorldError", *goworld.errors.__all__}
    found: dict[str, list[str]] = {}
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
                if any(b.endswith(("Error", "Exception")) or b in ours for b in bases):
                    found[node.name] = bases
    for name in found:
        ours.add(name)
    bad = [
        f"{name}({', '.join(bases)})"
        for name, bases in found.items()
        if name != "GoWorldError" and not any(b in ours for b in bases)
    ]
    assert not bad, f"exceptions outside the GoWorldError tree: {bad}"
    undocumented = sorted(name for name in found if f" {name} " not in doc and f" {name}\n" not in doc)
    assert not undocumented, f"not in goworld/errors.py's tree: {undocumented}"
