"""A plain ``websockets`` asyncio server using ``websockets.broadcast``: the floor of the cost."""
