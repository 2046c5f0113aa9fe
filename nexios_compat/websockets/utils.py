"""Status enums, close codes and message records, at the path Nexios has them.

The standard close codes are ``nexios_compat.status``'s, re-exported as they are
listed there; the 44xx codes are our room limits' (``nexios_compat.types``).
"""

from .. import status
from ..status import *  # noqa: F403  (the list lives in status.__all__)
from ..types import (
    WS_4403_FORBIDDEN,
    WS_4409_ROOM_FULL,
    WS_4413_TOO_MANY_ROOMS,
    ChannelAddStatusEnum,
    ChannelMessageDC,
    ChannelRemoveStatusEnum,
    GroupSendStatusEnum,
    PayloadTypeEnum,
)

__all__ = [
    *status.__all__,
    "WS_4403_FORBIDDEN",
    "WS_4409_ROOM_FULL",
    "WS_4413_TOO_MANY_ROOMS",
    "ChannelAddStatusEnum",
    "ChannelMessageDC",
    "ChannelRemoveStatusEnum",
    "GroupSendStatusEnum",
    "PayloadTypeEnum",
]
