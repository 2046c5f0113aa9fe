"""Side-by-side WebSocket room broadcast benchmark (see bench/README.md)."""
