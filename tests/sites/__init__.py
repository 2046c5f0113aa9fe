"""The scenario sites the tests serve with daphne: one package each (settings, asgi, app)."""
