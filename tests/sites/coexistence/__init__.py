"""The multiprocess site plus a site's own plain Channels consumers under /plain."""
