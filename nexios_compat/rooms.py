"""Room names: validation and the layer group names they map to."""

from __future__ import annotations

import hashlib
import re

from .conf import get_config

_VALID_LAYER_NAME = re.compile(r"^[a-zA-Z0-9._-]+$")
# Channels allows fewer than 100 characters in a group name.
_LAYER_NAME_LIMIT = 99


def check_group_name(name: object) -> str:
    """Return ``name`` if it is a usable group name, else raise ``ValueError``."""
    if not isinstance(name, str):
        raise ValueError(f"Group name must be a str, not {type(name).__name__}")
    if not name:
        raise ValueError("Group name must be a non-empty string")
    limit = int(get_config()["MAX_GROUP_NAME_LENGTH"])
    if len(name) > limit:
        raise ValueError(f"Group name is {len(name)} characters long; the limit is {limit}")
    return name


def layer_group(name: str) -> str:
    """Map any group name to a valid Channels group name, the same in every process."""
    prefix = f"{get_config()['GROUP_PREFIX']}.g."
    candidate = prefix + name
    if len(candidate) <= _LAYER_NAME_LIMIT and _VALID_LAYER_NAME.match(name):
        return candidate
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:40]
    return f"{get_config()['GROUP_PREFIX']}.h.{digest}"


def control_group() -> str:
    """The layer group every hub joins, for cluster-wide commands."""
    return f"{get_config()['GROUP_PREFIX']}.hubs"
