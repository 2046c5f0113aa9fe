"""The project's site plus rooms published from Django transactions."""
