"""Write the golden evidence under tests/data/golden/: a supply-map bundle, a movement bundle, a
register receipt and a feed snapshot, with the public files of the network that signed them.

Run once, with the code of the commit named in tests/data/golden/README.md, and commit the output.
Never re-run it to make a failing golden test pass: the point of the files is that evidence saved
by an older cagnet still verifies with this one (kind strings, RPC paths and JSON field names are
signed bytes).
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from coordinator import network  # noqa: E402
from coordinator.feeds.client import publish, subscribe  # noqa: E402
from coordinator.joint import bundle  # noqa: E402
from coordinator.joint.client import joint_query  # noqa: E402
from shared.register_client import fetch_history  # noqa: E402
from tests.netutil import THREE, make_network, running  # noqa: E402
from tests.registerutil import RegisterNetwork, make_entry, signed  # noqa: E402

OUT = ROOT / "tests" / "data" / "golden"
BOARD = "regional-board"


def _public_copy(netdir: Path, dest: Path) -> None:
    """The network folder without a single private key: what a verifier holds."""
    shutil.copytree(netdir, dest, ignore=shutil.ignore_patterns("*.key", "*.db", "*.db-*", "*.sqlite*"))
    for path in dest.rglob("*"):
        if path.is_file() and b"PRIVATE KEY" in path.read_bytes():
            path.unlink()


def main() -> None:
    if OUT.exists():
        sys.exit(f"{OUT} exists: golden evidence is written once, never regenerated")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        net = make_network(root, THREE, seed=11, clients=1500)
        network.add_principal(net.netdir, party_id=BOARD, role="regional-board", name="Regional Housing Board")
        OUT.mkdir(parents=True)
        with running(net):
            _, supply = joint_query(net.netdir, kind="supply-map")
            bundle.save(OUT / "supply-map.bundle.json", supply, network_dir=Path("network"))
            _, movement = joint_query(net.netdir, kind="movement", from_date="2009-04-01", to_date="2010-03-31")
            bundle.save(OUT / "movement.bundle.json", movement, network_dir=Path("network"))
            snapshot = publish(net.netdir)
            feed_dir = root / "feed"
            subscribe(net.netdir, feed_dir, principal=BOARD)
            stem = f"snapshot-{snapshot.sequence:06d}"
            shutil.copy(feed_dir / f"{stem}.dsse.json", OUT / "feed-snapshot.dsse.json")
            reg = RegisterNetwork(net.netdir, net.nodedirs)
            kent = THREE[0]
            entry = make_entry(reg.origin, kent)
            with reg.client(kent) as client:
                client.submit(signed(reg, entry))
            with reg.client(kent) as client:
                history = fetch_history(client, entry.provider.key)
            (OUT / "register.receipt.json").write_text(json.dumps(history.receipt, indent=2) + "\n")
        _public_copy(net.netdir, OUT / "network")
    print(f"golden evidence written to {OUT}")


if __name__ == "__main__":
    main()
