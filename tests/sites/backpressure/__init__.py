"""The security site plus one room with a send-backlog bound: the backpressure tests."""
