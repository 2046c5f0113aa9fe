"""A typical Nexios 3.12 app with only the import prefix changed."""
