"""A node's folder: its configuration (node.toml), its identity and, by default, its SQLite file.

    NODEDIR/node.toml        authority, endpoint, transport ("listen", or "dial-out": the node opens
                             no port and holds a stream to the coordinator), manifest and policy
                             paths, pinned coordinator key,
                             database URL, manifest_poll_s (seconds between manifest syncs),
                             metrics_listen (off unless set; loopback only), log_format (text|json)
    NODEDIR/identity/        signing.key, tls.key, tls.crt, ca.crt, rounding.key (made on first serve)
    NODEDIR/node.db          the embedded store (unless database_url points elsewhere)

Environment variables prefixed CAGNET_NODE_ override node.toml (e.g. CAGNET_NODE_DATABASE_URL
for a PostgreSQL store in production).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel, ConfigDict
from pydantic_settings import BaseSettings, SettingsConfigDict

from node.answers import linkage
from shared import pki
from shared.authorities import Register, shipped_register
from shared.errors import InvalidRequest
from shared.identity import Identity, install_certificate, write_keys
from shared.manifest import encode_key
from shared.models import JoinRequest

CONFIG = "node.toml"


class NodeSettings(BaseSettings):
    """Process-level overrides, read from CAGNET_NODE_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="CAGNET_NODE_")

    database_url: str | None = None
    listen: str | None = None
    metrics_listen: str | None = None
    log_format: str | None = None


class NodeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    nodedir: Path
    authority: str
    endpoint: str
    manifest_path: Path
    coordinator_key: str
    database_url: str
    # The signed network policy; by default beside the manifest, as `cagnet network init` writes it.
    policy_path: Path | None = None
    # How often `cagnet node serve` asks the coordinator for a newer manifest (0: never).
    manifest_poll_s: float = 30.0
    # The plain-HTTP Prometheus endpoint, "127.0.0.1:9464" or a port; off when unset (docs/operations.md).
    metrics_listen: str | None = None
    # `cagnet node serve`'s log lines: "text", or "json" for one object per line.
    log_format: Literal["text", "json"] = "text"
    # "listen": serve the `Node` service on `endpoint`; "dial-out": accept no connection, hold a
    # stream open to the coordinator and answer on it (`node.rpc.dialout`, docs/protocol.md "The
    # relay"). The manifest lists the same choice, so the coordinator knows how to ask.
    transport: Literal["listen", "dial-out"] = "listen"

    @property
    def policy_file(self) -> Path:
        return self.policy_path or self.manifest_path.parent / "policy.json"

    @property
    def manifest_history(self) -> Path:
        """Every manifest version this node has accepted, verified link by link from version 1."""
        return self.nodedir / "manifests"

    @property
    def rounding_key_path(self) -> Path:
        return self.identity_dir / "rounding.key"

    @property
    def linkage_key_path(self) -> Path:
        """The network linkage key every member node holds and the coordinator never does."""
        return self.identity_dir / "linkage.key"

    @property
    def person_key_path(self) -> Path:
        """The node's own key for sealing person hashes (`node.client_records`)."""
        return self.identity_dir / "person.key"

    @property
    def identity_dir(self) -> Path:
        return self.nodedir / "identity"

    def identity(self) -> Identity:
        return Identity.load(self.identity_dir)

    @property
    def listen(self) -> str:
        return NodeSettings().listen or self.endpoint


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def init_node(
    nodedir: Path,
    *,
    authority: str,
    endpoint: str,
    manifest_path: Path,
    linkage_key: bytes | None = None,
    await_linkage_key: bool = False,
    keys: tuple[Ed25519PrivateKey, ec.EllipticCurvePrivateKey] | None = None,
    register: Register | None = None,
    transport: Literal["listen", "dial-out"] = "listen",
) -> JoinRequest:
    """Make the node's keys and configuration; returns the join request to hand to the network.

    `linkage_key` is the network linkage key the members already hold (see node.linkage); the
    first member leaves it out and a new one is made, unless `await_linkage_key` (a join over the
    wire: a sponsoring member seals it to the node, `node.onboarding`). `keys` are the signing and
    TLS keys when already made. The authority's name and population come from the network's
    `register` (default: the shipped 2011 list). `transport` "dial-out": the node will open no
    port, and its join request asks the manifest to list it so."""
    try:
        info = (register or shipped_register()).authority(authority)
    except KeyError as exc:
        raise InvalidRequest(str(exc.args[0])) from None
    if (nodedir / CONFIG).exists():
        raise InvalidRequest(f"{nodedir} already holds a node; choose an empty folder")
    nodedir.mkdir(parents=True, exist_ok=True)
    signing, tls_key = write_keys(
        nodedir / "identity", signing=keys[0] if keys else None, tls_key=keys[1] if keys else None
    )

    if not await_linkage_key:
        linkage.install_linkage_key(nodedir / "identity" / "linkage.key", linkage_key)

    tls_public = tls_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (nodedir / CONFIG).write_text(
        f"authority = {_toml_str(authority)}\n"
        f"endpoint = {_toml_str(endpoint)}\n"
        f"manifest_path = {_toml_str(str(manifest_path.resolve()))}\n"
        f"database_url = {_toml_str('sqlite:///' + str((nodedir / 'node.db').resolve()))}\n"
        + (f"transport = {_toml_str(transport)}\n" if transport != "listen" else "")
    )
    return JoinRequest(
        party_id=authority,
        name=info.name,
        endpoint=endpoint,
        population=info.population,
        signing_key=encode_key(signing.public_key()),
        tls_public_key_pem=tls_public.decode(),
        transport=transport,
    )


def complete_join(nodedir: Path, *, cert_pem: bytes, ca_pem: bytes, coordinator_key: str) -> None:
    """Install the certificate the network issued and pin the key that signs the manifest."""
    install_certificate(nodedir / "identity", cert=pki.load_cert(cert_pem), ca_cert=pki.load_cert(ca_pem))
    with (nodedir / CONFIG).open("a") as f:
        f.write(f"coordinator_key = {_toml_str(coordinator_key)}\n")


def load_config(nodedir: Path) -> NodeConfig:
    path = nodedir / CONFIG
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidRequest(f"{nodedir} is not a node folder (run `cagnet node init` first)") from None
    except tomllib.TOMLDecodeError as exc:
        raise InvalidRequest(f"{path} is not valid TOML: {exc}") from None
    if "coordinator_key" not in raw:
        raise InvalidRequest(f"{nodedir} has not completed joining a network (no coordinator_key)")
    settings = NodeSettings()
    for key in ("database_url", "metrics_listen", "log_format"):
        value = getattr(settings, key)
        if value:
            raw[key] = value
    try:
        return NodeConfig(nodedir=nodedir, **raw)
    except Exception as exc:
        raise InvalidRequest(f"{path}: {exc}") from None
