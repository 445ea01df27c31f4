"""Tests for game.loader.load_game_package: importing a game package into a fresh registry.

Each test writes a tiny package into ``tmp_path`` under a unique name; the fixture restores
``sys.path`` and drops the package's modules from ``sys.modules`` afterwards.
"""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import goworld
from game.loader import GamePackageError, load_game_package
from goworld.entity.registry import Registry
from goworld.errors import EntityError

GOOD_INIT = """
import goworld

from .entities import Avatar

class Account(goworld.Entity):
    attributes = {"nick": goworld.CLIENT}

    @goworld.rpc(client=True, name="Login")
    def login(self, name: str) -> None: ...

class MySpace(goworld.Space):
    pass

goworld.register_entity(Account)
goworld.register_entity(Avatar)
goworld.register_space(MySpace)
"""

GOOD_ENTITIES = """
import goworld

class Avatar(goworld.Entity):
    persistent = True
    aoi_distance = 100
    attributes = {"name": goworld.ALL_CLIENTS | goworld.PERSISTENT}
"""

MakePkg = Callable[..., Path]


@pytest.fixture
def make_pkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakePkg]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    names: list[str] = []

    def make(init: str, **modules: str) -> Path:
        name = f"gwtestpkg_{uuid.uuid4().hex[:12]}"
        names.append(name)
        pkg = tmp_path / name
        pkg.mkdir()
        (pkg / "__init__.py").write_text(textwrap.dedent(init))
        for mod, text in modules.items():
            (pkg / f"{mod}.py").write_text(textwrap.dedent(text))
        return pkg

    yield make
    for mod in list(sys.modules):
        if any(mod == n or mod.startswith(n + ".") for n in names):
            del sys.modules[mod]


def _registration_is_closed() -> None:
    class Stray(goworld.Entity): ...

    with pytest.raises(EntityError, match="register_"):
        goworld.register_entity(Stray)


def test_good_package(make_pkg: MakePkg) -> None:
    pkg = make_pkg(GOOD_INIT, entities=GOOD_ENTITIES)
    reg = load_game_package(pkg, boot_entity="Account")
    assert isinstance(reg, Registry)
    assert set(reg.types) == {"Account", "Avatar", "__space__"}
    assert reg.space_desc is reg.types["__space__"]
    avatar = reg.get("Avatar")
    assert avatar.persistent and avatar.use_aoi and avatar.persistent_keys == {"name"}
    assert reg.get("Account").rpcs["Login"].client
    assert pkg.name in sys.modules and f"{pkg.name}.entities" in sys.modules
    _registration_is_closed()  # the registry is only active while the package is imported


def test_path_may_be_a_string_without_boot_check(make_pkg: MakePkg) -> None:
    pkg = make_pkg(GOOD_INIT, entities=GOOD_ENTITIES)
    reg = load_game_package(str(pkg))
    assert "Account" in reg.types


def _load_error(pkg: Path, **kwargs: str) -> str:
    with pytest.raises(GamePackageError) as info:
        load_game_package(pkg, **kwargs)
    message = str(info.value)
    assert str(pkg) in message  # says which package
    _registration_is_closed()
    return message


def test_syntax_error(make_pkg: MakePkg) -> None:
    pkg = make_pkg("import goworld\n\ndef broken(:\n    pass\n")
    message = _load_error(pkg)
    assert "SyntaxError" in message


def test_syntax_error_in_a_submodule(make_pkg: MakePkg) -> None:
    pkg = make_pkg("from . import entities\n", entities="class X(\n")
    message = _load_error(pkg)
    assert "SyntaxError" in message


def test_import_error(make_pkg: MakePkg) -> None:
    pkg = make_pkg("import goworld\nimport gw_no_such_module_xyz\n")
    message = _load_error(pkg)
    assert "ModuleNotFoundError" in message and "gw_no_such_module_xyz" in message


def test_exception_at_import_time(make_pkg: MakePkg) -> None:
    pkg = make_pkg("raise RuntimeError('game init exploded')\n")
    message = _load_error(pkg)
    assert "RuntimeError" in message and "game init exploded" in message


def test_bad_registration(make_pkg: MakePkg) -> None:
    pkg = make_pkg(
        """
        import goworld

        class Monster(goworld.Entity):
            attributes = {"loot": goworld.PERSISTENT}

        goworld.register_entity(Monster)
        """
    )
    message = _load_error(pkg)
    assert "Monster" in message and "PERSISTENT" in message and "loot" in message


def test_package_registering_nothing(make_pkg: MakePkg) -> None:
    pkg = make_pkg("import goworld\n\nclass Unregistered(goworld.Entity):\n    pass\n")
    message = _load_error(pkg)
    assert "registers no entity types" in message


def test_boot_entity_not_registered(make_pkg: MakePkg) -> None:
    pkg = make_pkg(GOOD_INIT, entities=GOOD_ENTITIES)
    message = _load_error(pkg, boot_entity="Boot")
    assert "boot_entity 'Boot'" in message
    assert "Account" in message and "Avatar" in message  # lists what is registered


def test_not_a_package(tmp_path: Path) -> None:
    (tmp_path / "notapkg").mkdir()
    with pytest.raises(GamePackageError, match="not a Python package"):
        load_game_package(tmp_path / "notapkg")
    with pytest.raises(GamePackageError, match="not a Python package"):
        load_game_package(tmp_path / "missing")


def test_loading_twice_reimports_the_modules(make_pkg: MakePkg) -> None:
    pkg = make_pkg(GOOD_INIT, entities=GOOD_ENTITIES)
    first = load_game_package(pkg, boot_entity="Account")
    first_module = sys.modules[pkg.name]
    first_sub = sys.modules[f"{pkg.name}.entities"]

    # edit the submodule (a different size, so a stale bytecode cache cannot be reused)
    (pkg / "entities.py").write_text(
        textwrap.dedent(GOOD_ENTITIES).replace(
            '{"name": goworld.ALL_CLIENTS | goworld.PERSISTENT}',
            '{"name": goworld.ALL_CLIENTS | goworld.PERSISTENT, "level": goworld.CLIENT}',
        )
    )
    second = load_game_package(pkg, boot_entity="Account")
    assert second is not first
    assert sys.modules[pkg.name] is not first_module
    assert sys.modules[f"{pkg.name}.entities"] is not first_sub
    assert second.types["Account"].cls is not first.types["Account"].cls
    assert second.get("Avatar").client_keys == {"name", "level"}
    assert first.get("Avatar").client_keys == {"name"}  # the first registry is untouched
    assert sys.path.count(str(pkg.parent)) == 1


def test_a_failed_load_does_not_poison_the_next_one(make_pkg: MakePkg) -> None:
    pkg = make_pkg("import goworld\nimport gw_no_such_module_xyz\n")
    _load_error(pkg)
    (pkg / "__init__.py").write_text(
        "import goworld\n\nclass Fine(goworld.Entity):\n    pass\n\ngoworld.register_entity(Fine)\n"
    )
    reg = load_game_package(pkg)
    assert set(reg.types) == {"Fine"}
