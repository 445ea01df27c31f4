"""The ``goworld`` command line.

Today it validates and shows a cluster configuration (``goworld config``). The cluster verbs of
GoWorld (``build``, ``start``, ``stop``, ``reload``, ``status``, ``kill``) arrive with the
cluster engine. The CLI reads goworld.ini through :mod:`goworld.config` and starts roles as
subprocesses (``python -m dispatcher|gate|game``); it never imports a role.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from goworld.config import ClusterConfig, load
from goworld.errors import ConfigError

__all__ = ["main"]

_INI_OPTION = click.option(
    "--ini",
    "ini_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("goworld.ini"),
    show_default=True,
    help="The cluster configuration file.",
)


def _load_or_exit(path: Path) -> ClusterConfig:
    try:
        return load(path)
    except ConfigError as exc:
        click.echo(f"goworld: config error: {exc}", err=True)
        sys.exit(2)


def describe(cfg: ClusterConfig) -> list[str]:
    """Human-readable lines describing the cluster layout."""
    d = cfg.deployment
    lines = [
        f"config   {cfg.path}",
        f"cluster  {d.desired_dispatchers} dispatcher(s), {d.desired_games} game(s), "
        f"{d.desired_gates} gate(s)",
        f"storage  {cfg.storage.type} {cfg.storage.path or cfg.storage.url}",
        "kvdb     "
        + (f"{cfg.kvdb.type} {cfg.kvdb.path or cfg.kvdb.url}" if cfg.kvdb else "disabled"),
    ]
    for dispatcher in cfg.dispatchers.values():
        lines.append(
            f"dispatcher{dispatcher.id}  grpc {dispatcher.listen_addr} "
            f"(advertised {dispatcher.advertise_addr})  log {dispatcher.log_file}"
        )
    for game in cfg.games.values():
        lines.append(
            f"game{game.id}        boot entity {game.boot_entity}  save every "
            f"{game.save_interval}s  log {game.log_file}"
        )
    for gate in cfg.gates.values():
        extras = [
            name
            for name, on in (
                ("snappy", gate.compress_connection),
                ("tls", gate.encrypt_connection),
                (f"legacy {gate.legacy_client_protocol}", gate.legacy_client_protocol),
            )
            if on
        ]
        lines.append(
            f"gate{gate.id}        tcp+kcp {gate.listen_addr}  ws://{gate.http_addr}/ws"
            + (f"  [{', '.join(extras)}]" if extras else "")
            + f"  log {gate.log_file}"
        )
    return lines


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="goworld-py")
def main() -> None:
    """goworld: run and manage a GoWorld-compatible game-server cluster."""


@main.command("config")
@_INI_OPTION
def config_command(ini_path: Path) -> None:
    """Validate goworld.ini and show the cluster it describes."""
    cfg = _load_or_exit(ini_path)
    for line in describe(cfg):
        click.echo(line)


if __name__ == "__main__":
    main()
