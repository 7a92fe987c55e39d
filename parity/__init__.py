"""parity: the cross-framework harness (see parity.run)."""
