"""The security site plus one room whose handler mixes direct replies and broadcasts: the framing tests."""
