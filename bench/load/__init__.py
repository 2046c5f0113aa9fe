"""The load: one room's broadcast load generator and the chat site's many small rooms."""
