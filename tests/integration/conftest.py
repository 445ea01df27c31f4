from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from goworld import gobot
from goworld.testing import ClusterRunner, running_cluster

APP = Path(__file__).resolve().parents[1] / "apps" / "cluster_app"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterRunner]:
    """2 dispatchers, 2 games, 2 gates running tests/apps/cluster_app, started by the CLI."""
    with running_cluster(tmp_path_factory.mktemp("cluster"), APP) as runner:
        runner.wait_for_log("created here", count=5)  # SpaceService x2 + EchoService x3
        yield runner


@pytest.fixture(scope="session")
def test_client() -> Path:
    """GoWorld's Go test bot, built from ../shared/goworld-go (cached in .cache/gobot)."""
    try:
        return gobot.build_test_client()
    except (gobot.GoToolchainMissing, gobot.BuildError) as exc:
        pytest.fail(f"cannot build GoWorld's Go test bot: {exc}", pytrace=False)
