"""A network for register tests: a CA, a coordinator serving on port 0 with real mTLS and the
register on a given database, and member node folders (keys and certificates only: a witness or a
submitting member needs no node server and no data)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from coordinator import network
from coordinator.register.server import RegisterRuntime
from coordinator.server import CoordinatorRuntime, create_server
from node.config import complete_join, init_node, load_config
from shared import dsse, pki
from shared.accreditation import AccreditationEntry, Criteria, ProviderRef, QafLevels, entry_bytes, sign_entry
from shared.checkpoint import register_origin
from shared.identity import Identity
from shared.manifest import COORDINATOR, ManifestSource
from shared.provider_identity import provider_key
from shared.register_client import RegisterClient

# Kent, Medway, Surrey, West Sussex, East Sussex: five members, so a majority is three.
FIVE = ("E10000016", "E06000035", "E10000030", "E10000032", "E10000011")
KENT, MEDWAY, SURREY, WEST_SUSSEX, EAST_SUSSEX = FIVE
EVIDENCE = "ab" * 32


@dataclass
class RegisterNetwork:
    netdir: Path
    nodedirs: dict[str, Path]

    def identity(self, party: str) -> Identity:
        if party in self.nodedirs:
            return load_config(self.nodedirs[party]).identity()
        return Identity.load(network.principal_dir(self.netdir, party))

    def client(self, party: str) -> RegisterClient:
        """A register client acting as a member (its node's keys) or a principal such as cag-chair."""
        if party in self.nodedirs:
            config = load_config(self.nodedirs[party])
            trusted = dsse.load_public_key(base64.b64decode(config.coordinator_key))
            return RegisterClient(config.identity(), ManifestSource(config.manifest_path, trusted).current)
        return RegisterClient(self.identity(party), lambda: network.read(self.netdir))

    @property
    def origin(self) -> str:
        return register_origin(network.read(self.netdir))


def make_register_network(root: Path, codes: tuple[str, ...] = FIVE) -> RegisterNetwork:
    netdir = root / "network"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    nodedirs = {}
    for code in codes:
        nodedir = root / code
        request = init_node(
            nodedir, authority=code, endpoint="127.0.0.1:0", manifest_path=network.manifest_path(netdir)
        )
        cert, ca_cert, _ = network.admit(netdir, request)
        complete_join(
            nodedir,
            cert_pem=pki.cert_pem(cert),
            ca_pem=pki.cert_pem(ca_cert),
            coordinator_key=network.coordinator_key_b64(netdir),
        )
        nodedirs[code] = nodedir
    return RegisterNetwork(netdir, nodedirs)


@contextmanager
def serving(net: RegisterNetwork, database_url: str, *, quorum: int | None = None) -> Iterator[RegisterRuntime]:
    """The coordinator (with the register on `database_url`) on port 0, listed in the manifest."""
    coordinator = CoordinatorRuntime.open(net.netdir)
    register = RegisterRuntime.open(net.netdir, database_url=database_url, quorum=quorum)
    server, port = create_server(coordinator, address="127.0.0.1:0", register=register)
    try:
        network.set_endpoint(net.netdir, COORDINATOR, f"127.0.0.1:{port}")
        yield register
    finally:
        server.stop(grace=None).wait()
        coordinator.clients.close()
        register.close()


def make_entry(
    origin: str,
    authority: str,
    *,
    name: str = "Weald & Downs Housing Association Limited",
    charity_number: str | None = "1149085",
    decision: str = "accredited",
    passported_from: str | None = None,
    valid_from: date = date(2025, 4, 1),
    valid_to: date = date(2028, 4, 1),
    reference: str = "",
) -> AccreditationEntry:
    met = "met" if decision == "accredited" else "not-assessed"
    level = "B" if decision == "accredited" else "not-assessed"
    return AccreditationEntry.model_validate(
        {
            "origin": origin,
            "authority": authority,
            "provider": ProviderRef(
                key=provider_key(name=name, charity_number=charity_number), name=name, charity_number=charity_number
            ),
            "decision": decision,
            "passported_from": passported_from,
            "criteria": Criteria(**dict.fromkeys(Criteria.model_fields, met)),
            "qaf": QafLevels(**dict.fromkeys(QafLevels.model_fields, level)),
            "decided_on": valid_from,
            "valid_from": valid_from,
            "valid_to": valid_to,
            "evidence_sha256": EVIDENCE,
            "reference": reference,
        }
    )


def signed(net: RegisterNetwork, entry: AccreditationEntry, *, signer: str | None = None) -> bytes:
    """The entry's logged bytes, signed by `signer` (default: the authority it names)."""
    return entry_bytes(sign_entry(entry, net.identity(signer or entry.authority).signing_key))
