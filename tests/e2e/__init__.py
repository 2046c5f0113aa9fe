"""End to end: the seed documents, a Nexios 3.12 app, a fresh site, coexistence, the bench."""
