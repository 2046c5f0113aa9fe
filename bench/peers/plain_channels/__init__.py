"""Plain Django Channels room broadcast peer (AsyncJsonWebsocketConsumer + group_send)."""
