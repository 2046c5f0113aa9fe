"""URLs of the history view behind endpoints with each kind of room rule."""
