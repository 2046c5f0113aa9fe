"""Peer room-broadcast servers the benchmark compares against (see bench/README.md)."""
