"""`cagnet register ...` and `cagnet node witness` as a user runs them, against a live coordinator:
submit from an ENTRY.toml, witness, status, history saved as a receipt, offline verify, checkpoint
and the coordinator-side verify-log. Every command's --json output is parsed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator.register import store
from shared.errors import InconsistentLog
from tests.registerutil import EAST_SUSSEX, KENT, MEDWAY, SURREY, WEST_SUSSEX, make_register_network, serving

ENTRY = """
decision = "{decision}"
{extra}
valid_from = 2025-04-01
evidence = ["evidence.pdf"]

[provider]
name = "Weald & Downs Housing Association Ltd"
charity_number = "1149085"

[criteria]
financial_viability = "met"
administration = "met"
employment_policies = "met"
management = "met"
competence_to_deliver = "met"

[qaf]
assessment_and_support_planning = "A"
security_health_and_safety = "B"
safeguarding_and_protection_from_abuse = "B"
fair_access_diversity_and_inclusion = "B"
client_involvement = "C"
"""


def _run(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def test_the_register_from_the_command_line(tmp_path: Path) -> None:
    net = make_register_network(tmp_path)
    url = f"sqlite:///{tmp_path}/register.db"
    (tmp_path / "evidence.pdf").write_bytes(b"the authority's evidence")
    entries = {
        KENT: ENTRY.format(decision="accredited", extra=""),
        SURREY: ENTRY.format(decision="passported", extra=f'passported_from = "{KENT}"'),
        EAST_SUSSEX: ENTRY.format(decision="suspended", extra=""),
    }
    with serving(net, url):
        for code, body in entries.items():
            path = tmp_path / f"{code}.toml"
            path.write_text(body)
            logged = _run("register", "submit", str(net.nodedirs[code]), str(path))
            assert logged["provider"] == "charity:1149085"
        assert logged["leaf_index"] == 2 and logged["tree_size"] == 3

        rounds = [_run("node", "witness", str(net.nodedirs[code])) for code in (KENT, MEDWAY, SURREY)]
        assert [r["final"] for r in rounds] == [False, False, True]

        status = _run(
            "register", "status", "charity:1149085", "--node", str(net.nodedirs[MEDWAY]), "--on", "2026-01-01"
        )
        assert status["overall"] == "suspended" and status["suspended_by"] == [EAST_SUSSEX]
        assert status["checkpoint"]["final"] and status["checkpoint"]["cosigned_by"] == sorted((KENT, MEDWAY, SURREY))

        receipt = tmp_path / "receipt.json"
        history = _run("register", "history", "Weald and Downs HA", "--network", str(net.netdir), "--out", str(receipt))
        assert [e["decision"] for e in history["entries"]] == ["accredited", "passported", "suspended"]
        checkpoint = _run("register", "checkpoint", "--network", str(net.netdir))
        assert checkpoint["size"] == 3 and checkpoint["final"]

    # Offline, with the coordinator gone.
    verified = _run("register", "verify", str(receipt))
    assert verified["verified"] and [e["leaf_index"] for e in verified["entries"]] == [0, 1, 2]
    assert _run("register", "verify", str(receipt), "--node", str(net.nodedirs[MEDWAY]))["verified"]
    _docs_verifier(receipt)
    strict = CliRunner().invoke(app, ["register", "verify", str(receipt), "--quorum", "4"])
    assert isinstance(strict.exception, InconsistentLog) and strict.exit_code != 0

    doc = json.loads(receipt.read_text())
    doc["entries"][0]["leaf_index"] = 1
    receipt.write_text(json.dumps(doc))
    tampered = CliRunner().invoke(app, ["register", "verify", str(receipt)])
    assert isinstance(tampered.exception, InconsistentLog)
    with pytest.raises(AssertionError):
        _docs_verifier(receipt)

    assert _run("register", "verify-log", str(net.netdir), "--database-url", url) == {"verified": True, "size": 3}
    engine = store.open_register(url)
    (passport,) = store.entries(engine, 1, 2)
    with engine.begin() as conn:  # East Sussex's suspension swapped for Surrey's (signed) passport
        conn.execute(text("UPDATE register_leaf SET entry = :e WHERE leaf_index = 2"), {"e": passport})
    engine.dispose()
    edited = CliRunner().invoke(app, ["register", "verify-log", str(net.netdir), "--database-url", url])
    assert isinstance(edited.exception, InconsistentLog) and "leaf 2" in str(edited.exception)


def _docs_verifier(receipt: Path) -> None:
    """The hashlib-only RFC 6962 verifier printed in docs/register.md, run as printed."""
    doc = (Path(__file__).resolve().parent.parent.parent / "docs" / "register.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.DOTALL)
    assert code is not None
    source = code.group(1).replace('Path("receipt.json")', f"Path({str(receipt)!r})")
    exec(compile(source, "docs/register.md", "exec"), {})


@pytest.mark.parametrize("field", ["authority", "origin"])
def test_an_entry_file_cannot_speak_for_another_authority(tmp_path: Path, field: str) -> None:
    net = make_register_network(tmp_path, codes=(KENT,))
    (tmp_path / "evidence.pdf").write_bytes(b"x")
    path = tmp_path / "entry.toml"
    path.write_text(f'{field} = "E06000035"\n' + ENTRY.format(decision="accredited", extra=""))
    result = CliRunner().invoke(app, ["register", "submit", str(net.nodedirs[KENT]), str(path)])
    assert result.exit_code != 0 and f"may not set {field!r}" in str(result.exception)


def test_the_register_still_reads_after_a_member_rotates_its_key(tmp_path: Path) -> None:
    """An entry stays signed by the key its authority held when it signed it: after that authority
    rotates its key, every member and principal still reads the register (list, history, a receipt
    made afterwards, the witnesses' audit, verify-log), as saved evidence outlives key rotation."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from coordinator import network
    from shared.auth import now_ms
    from shared.manifest import encode_key, write_manifest

    net = make_register_network(tmp_path)
    url = f"sqlite:///{tmp_path}/register.db"
    (tmp_path / "evidence.pdf").write_bytes(b"the authority's evidence")
    path = tmp_path / "entry.toml"
    path.write_text(ENTRY.format(decision="accredited", extra=""))
    with serving(net, url):
        _run("register", "submit", str(net.nodedirs[MEDWAY]), str(path))
        for code in (KENT, SURREY, EAST_SUSSEX):
            _run("node", "witness", str(net.nodedirs[code]))
        # Medway's key is replaced in a new manifest version (founding phase: the operator signs
        # it), the old key kept for an hour's overlap as `network rotate-key` does.
        manifest = network.read(net.netdir)
        medway = manifest.party(MEDWAY)
        rotated = medway.model_copy(
            update={
                "signing_key": encode_key(Ed25519PrivateKey.generate().public_key()),
                "previous_key": medway.signing_key,
                "previous_key_until_ms": now_ms() + 3_600_000,
            }
        )
        write_manifest(
            network.manifest_path(net.netdir),
            manifest.with_party(rotated),
            network.coordinator_identity(net.netdir).signing_key,
        )

        listed = _run("register", "list", "--node", str(net.nodedirs[KENT]))
        assert [p["provider"] for p in listed["providers"]] == ["charity:1149085"]
        assert _run("register", "list", "--network", str(net.netdir))["providers"]
        receipt = tmp_path / "receipt.json"
        history = _run("register", "history", "charity:1149085", "--network", str(net.netdir), "--out", str(receipt))
        assert [e["authority"] for e in history["entries"]] == [MEDWAY]
        assert _run("node", "witness", str(net.nodedirs[KENT]))["audited"] == 1  # cosigned before: re-checked
        # First seen now, within the overlap (a retired key's new entries after it: test_accreditation).
        assert _run("node", "witness", str(net.nodedirs[WEST_SUSSEX]))["new_entries"] == 1
    assert _run("register", "verify", str(receipt))["verified"]
    assert _run("register", "verify-log", str(net.netdir), "--database-url", url) == {"verified": True, "size": 1}


def test_a_piped_register_list_cuts_no_column(tmp_path: Path) -> None:
    """`cagnet register list` with its standard output a pipe (no terminal, no COLUMNS), as in
    `cagnet register list ... > providers.txt`: no cell cut short (the demo's "company:028123…"),
    as `cagnet query` prints its tables."""
    net = make_register_network(tmp_path)
    (tmp_path / "evidence.pdf").write_bytes(b"the authority's evidence")
    path = tmp_path / "entry.toml"
    long_name = "The Weald and Downs Supported Housing and Floating Support Association (South East) Ltd"
    entry = ENTRY.format(decision="accredited", extra="").replace("Weald & Downs Housing Association Ltd", long_name)
    path.write_text(entry.replace('charity_number = "1149085"', 'company_number = "02812345"'))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent.parent)
    with serving(net, f"sqlite:///{tmp_path}/register.db"):
        _run("register", "submit", str(net.nodedirs[KENT]), str(path))
        done = subprocess.run(
            [sys.executable, "-m", "cagnet", "register", "list", "--node", str(net.nodedirs[MEDWAY])],
            capture_output=True,
            env=env,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr.decode()
    text = done.stdout.decode()
    assert "company:02812345" in text and " ".join(long_name.split()[:3]) in text, text
    assert "…" not in text.split("checkpoint:")[0], text
