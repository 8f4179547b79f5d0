"""Write the golden net-flow and KPI bundles under tests/data/golden/records/: made by the code of
commit faa1cc7 (before derived figures were withheld or bounded, issue 26), on the three-member
network of that issue, so that `cagnet verify` is shown to keep accepting evidence saved then.

Run once, with the old code first on the path (its modules lived at coordinator/client.py and
coordinator/bundle.py):

    git worktree add /tmp/old faa1cc7
    PYTHONPATH=/tmp/old python scripts/make_golden_records.py tests/data/golden/records

Never re-run it to make a failing golden test pass (tests/data/golden/README.md).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from coordinator import bundle  # type: ignore[attr-defined]  # faa1cc7's layout
from coordinator.client import joint_query  # type: ignore[import-not-found]  # faa1cc7's layout
from tests.netutil import make_network, running

MEMBERS = ("E10000016", "E06000035", "E10000030")  # the network of issue 26, synthetic seeds 1-3


def _public_copy(netdir: Path, dest: Path) -> None:
    """The network folder without a single private key: what a verifier holds."""
    shutil.copytree(netdir, dest, ignore=shutil.ignore_patterns("*.key", "*.db", "*.db-*", "*.sqlite*"))
    for path in dest.rglob("*"):
        if path.is_file() and b"PRIVATE KEY" in path.read_bytes():
            path.unlink()


def main() -> None:
    out = Path(sys.argv[1]).resolve()
    if out.exists():
        sys.exit(f"{out} exists: golden evidence is written once, never regenerated")
    with tempfile.TemporaryDirectory() as tmp:
        net = make_network(Path(tmp), MEMBERS, seed=1)
        out.mkdir(parents=True)
        with running(net):
            for kind in ("net-flow", "kpi"):
                _, envelope = joint_query(net.netdir, kind=kind, from_date="2009-04-01", to_date="2010-03-31")
                bundle.save(out / f"{kind}.bundle.json", envelope, network_dir=Path("network"))
        _public_copy(net.netdir, out / "network")
    print(f"golden evidence written to {out}")


if __name__ == "__main__":
    main()
