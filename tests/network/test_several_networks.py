"""One authority in two networks: two node folders, each with its own keys, certificate, public
files, database and endpoint, served side by side in one process without either seeing the
other's (docs/onboarding.md, "One node in several networks"). Real servers on port 0, mTLS."""

from __future__ import annotations

from pathlib import Path

from coordinator.joint.client import joint_query
from node.config import load_config
from shared.identity import Identity
from tests.netutil import make_network, running

KENT, MEDWAY, BRIGHTON = "E10000016", "E06000035", "E06000043"


def test_one_authority_serves_two_networks_from_two_folders(tmp_path: Path) -> None:
    first = make_network(tmp_path / "first", (KENT, MEDWAY), seed=3)
    second = make_network(tmp_path / "second", (MEDWAY, BRIGHTON), seed=5)
    medway_first, medway_second = first.nodedirs[MEDWAY], second.nodedirs[MEDWAY]
    # Nothing shared between Medway's two nodes: keys, certificates (from two CAs), files, stores.
    a, b = Identity.load(medway_first / "identity"), Identity.load(medway_second / "identity")
    assert a.party_id == b.party_id == MEDWAY
    assert a.keyid != b.keyid and a.ca_cert_pem != b.ca_cert_pem
    assert (medway_first / "identity" / "linkage.key").read_bytes() != (
        medway_second / "identity" / "linkage.key"
    ).read_bytes()
    config_a, config_b = load_config(medway_first), load_config(medway_second)
    assert config_a.database_url != config_b.database_url
    assert config_a.manifest_path.parent != config_b.manifest_path.parent
    with running(first), running(second):
        one, _ = joint_query(first.netdir, kind="supply-map")
        two, _ = joint_query(second.netdir, kind="supply-map")
        assert sorted(one.answered) == sorted((KENT, MEDWAY)) and not one.missing
        assert sorted(two.answered) == sorted((MEDWAY, BRIGHTON)) and not two.missing
        # Each of Medway's nodes answers only its own network's coordinator, on its own port.
        assert first.runtimes[MEDWAY] is not second.runtimes[MEDWAY]
        assert first.runtimes[MEDWAY].manifests.current().ca_fingerprint != (
            second.runtimes[MEDWAY].manifests.current().ca_fingerprint
        )
    # Each answered from its own store (loaded with different synthetic seeds).
    medway_one = next(a for a in one.result.authorities if a.authority == MEDWAY)
    medway_two = next(a for a in two.result.authorities if a.authority == MEDWAY)
    assert medway_one.units != medway_two.units
