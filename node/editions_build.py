"""Protect the standard table set's current edition for a node folder, when its records change
(after an import or synthetic data, at node start): a grid question then finds it in the store.

The node's own policy, manifest, rounding key and members, exactly as the serving node reads them.
"""

from __future__ import annotations

import base64

from sqlalchemy.engine import Engine

from node.config import NodeConfig
from node.release import Releaser, load_rounding_secret
from shared import dsse
from shared.authorities import register_of
from shared.manifest import ManifestSource
from shared.policy import PolicySource

__all__ = ["prepare_edition"]


def prepare_edition(config: NodeConfig, engine: Engine) -> bool:
    """Protect and keep the edition for the records as they are now (a kept one is read back);
    False when the network's policy has no standard table set."""
    trusted = dsse.load_public_key(base64.b64decode(config.coordinator_key))
    manifests = ManifestSource(config.manifest_path, trusted, keep=config.manifest_history)
    policy = PolicySource(config.policy_file, trusted, manifests=manifests).current()
    manifest = manifests.current()
    members = frozenset(p.id for p in manifest.members)
    register = register_of(manifest)
    releaser = Releaser(
        engine,
        config.authority,
        load_rounding_secret(config.rounding_key_path),
        members=lambda: members,
        register=lambda: register,
    )
    return releaser.prepare_grid(policy)
