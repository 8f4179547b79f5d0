"""Private keys under a passphrase (CAGNET_KEY_PASSPHRASE): written encrypted, read with it, and
refused plainly, naming the file, without it or with a wrong one; a network whose every key is
encrypted serves and answers a joint query over real mTLS."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coordinator import network
from coordinator.joint.client import joint_query
from shared import keyfile
from shared.errors import KeyLocked
from shared.identity import Identity
from tests.netutil import make_network, running

PASSPHRASE = "correct horse battery staple"


def test_keys_are_written_encrypted_and_read_only_with_the_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(keyfile.PASSPHRASE_ENV, PASSPHRASE)
    netdir = tmp_path / "net"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    chair_dir = network.principal_dir(netdir, "cag-chair")
    for path in (netdir / "ca" / "ca.key", chair_dir / "signing.key", chair_dir / "tls.key"):
        data = path.read_bytes()
        assert data.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"), path
        assert oct(path.stat().st_mode & 0o777) == "0o600"
    chair = Identity.load(chair_dir)
    assert b"ENCRYPTED" not in chair.tls_key_pem  # gRPC gets the key decrypted, in memory only

    monkeypatch.delenv(keyfile.PASSPHRASE_ENV)
    with pytest.raises(KeyLocked, match=f"signing.key is encrypted: set {keyfile.PASSPHRASE_ENV}"):
        Identity.load(chair_dir)
    monkeypatch.setenv(keyfile.PASSPHRASE_ENV, "wrong")
    with pytest.raises(KeyLocked, match="is not its passphrase"):
        network.load_ca(netdir)

    # The command line says the same in one line, exit code 2, no traceback.
    env = {k: v for k, v in os.environ.items() if k != keyfile.PASSPHRASE_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "cagnet", "network", "principal", "add", str(netdir), "--id", "board", "--role",
         "regional-board"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "ca.key is encrypted: set CAGNET_KEY_PASSPHRASE" in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert not network.principal_dir(netdir, "board").exists()


def test_a_network_with_encrypted_keys_answers_over_mtls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(keyfile.PASSPHRASE_ENV, PASSPHRASE)
    built = make_network(tmp_path, ("E06000035", "E06000043"))
    assert (built.nodedirs["E06000035"] / "identity" / "tls.key").read_bytes().startswith(b"-----BEGIN ENCRYPTED")
    with running(built) as live:
        bundle, _ = joint_query(live.netdir, kind="supply-map")
    assert sorted(bundle.answered) == ["E06000035", "E06000043"]


def test_keys_written_without_a_passphrase_stay_readable_when_one_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(keyfile.PASSPHRASE_ENV, raising=False)
    netdir = tmp_path / "net"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    monkeypatch.setenv(keyfile.PASSPHRASE_ENV, PASSPHRASE)
    assert Identity.load(network.principal_dir(netdir, "cag-chair")).party_id == "cag-chair"
