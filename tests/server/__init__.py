"""Tests against one real daphne process (raw sockets, leaks, backpressure, origin, transactions)."""
