"""Mutual TLS between games/gates and dispatchers, with grpc's own credentials (optional).

``[deployment] cluster_tls_ca``, ``cluster_tls_cert`` and ``cluster_tls_key`` (PEM files,
relative to the ini, checked when it is loaded): every dispatcher serves its gRPC port with
that certificate and requires a client certificate signed by the CA
(``grpc.ssl_server_credentials(..., require_client_auth=True)``); every game and gate dials
with the same CA and presents its certificate (``grpc.ssl_channel_credentials``). Each host may
have its own certificate and key, signed by the one CA. A game or gate checks the dispatcher's
certificate against the host of its ``advertise_addr``, or against
``cluster_tls_server_name`` when that is set (one certificate for the whole cluster, e.g. with
the name ``goworld``).

TLS encrypts the traffic and keeps out whoever has no certificate of the CA; the cluster
secret (:mod:`goworld.cluster.auth`) still proves, on top, which game or gate a stream is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import grpc

from goworld.config import ClusterConfig
from goworld.errors import ConfigError

__all__ = ["ClusterTLS", "load_tls"]


@dataclass(frozen=True, slots=True)
class ClusterTLS:
    ca: bytes
    cert: bytes
    key: bytes = field(repr=False)
    server_name: str  # "" = the host of the address dialled

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(self.ca, self.key, self.cert)

    def channel_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def load_tls(cfg: ClusterConfig) -> ClusterTLS | None:
    """The cluster's TLS material, or None when mutual TLS is off.

    Raises:
        ConfigError: a file cannot be read (named with its key).
    """
    dep = cfg.deployment
    if dep.cluster_tls_cert is None or dep.cluster_tls_key is None or dep.cluster_tls_ca is None:
        return None
    files: dict[str, bytes] = {}
    for key, file in (
        ("cluster_tls_ca", dep.cluster_tls_ca),
        ("cluster_tls_cert", dep.cluster_tls_cert),
        ("cluster_tls_key", dep.cluster_tls_key),
    ):
        files[key] = _read(cfg.path, key, file)
    return ClusterTLS(
        files["cluster_tls_ca"], files["cluster_tls_cert"], files["cluster_tls_key"],
        dep.cluster_tls_server_name,
    )


def _read(ini: Path, key: str, file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read {file}: {exc.strerror or exc}", path=str(ini), section="deployment", key=key
        ) from exc
