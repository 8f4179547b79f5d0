"""Sub-regional feeds: signed snapshots, the schedule that publishes them, and the subscriber's client."""
