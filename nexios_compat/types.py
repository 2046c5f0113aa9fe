"""Types the engine and the API share: status enums, payload types, close codes, message records.

A leaf module: it imports nothing from the package, so both sides can use it.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import typing
import uuid as uuid_module


class ChannelAddStatusEnum(enum.Enum):
    """Result of ``ChannelBox.add_channel_to_group``."""

    CHANNEL_ADDED = "CHANNEL_ADDED"
    CHANNEL_EXIST = "CHANNEL_EXIST"


class ChannelRemoveStatusEnum(enum.Enum):
    """Result of ``ChannelBox.remove_channel_from_group``."""

    CHANNEL_REMOVED = "CHANNEL_REMOVED"
    CHANNEL_DOES_NOT_EXIST = "CHANNEL_DOES_NOT_EXIST"
    GROUP_REMOVED = "GROUP_REMOVED"
    GROUP_DOES_NOT_EXIST = "GROUP_DOES_NOT_EXIST"


class GroupSendStatusEnum(enum.Enum):
    """Result of ``ChannelBox.group_send``."""

    GROUP_SEND = "GROUP_SEND"
    NO_SUCH_GROUP = "NO_SUCH_GROUP"


class PayloadTypeEnum(enum.StrEnum):
    """How a channel (de)serializes payloads; ``BINARY`` is an alias of ``BYTES``."""

    JSON = "json"
    TEXT = "text"
    BYTES = "bytes"
    BINARY = "bytes"

    @classmethod
    def coerce(cls, value: PayloadTypeEnum | str) -> PayloadTypeEnum:
        """Return the member for a member or its string value ("binary" included)."""
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            lowered = value.lower()
            if lowered == "binary":
                return cls.BYTES
            for member in cls:
                if member.value == lowered:
                    return member
        raise ValueError(f"Unknown payload type {value!r}: use json, text or bytes")


# Close codes (RFC 6455 and the IANA registry), named as nexios.status names them.
WS_1000_NORMAL_CLOSURE = 1000
WS_1001_GOING_AWAY = 1001
WS_1002_PROTOCOL_ERROR = 1002
WS_1003_UNSUPPORTED_DATA = 1003
WS_1005_NO_STATUS_RCVD = 1005
WS_1006_ABNORMAL_CLOSURE = 1006
WS_1007_INVALID_FRAME_PAYLOAD_DATA = 1007
WS_1008_POLICY_VIOLATION = 1008
WS_1009_MESSAGE_TOO_BIG = 1009
WS_1010_MANDATORY_EXT = 1010
WS_1011_INTERNAL_ERROR = 1011
WS_1012_SERVICE_RESTART = 1012
WS_1013_TRY_AGAIN_LATER = 1013
WS_1014_BAD_GATEWAY = 1014
WS_1015_TLS_HANDSHAKE = 1015
# Application close codes (4000-4999) used by nexios_compat.
# A ticket (?ticket=) that is forged, expired, used, or whose user or session is gone.
WS_4401_UNAUTHORIZED = 4401
WS_4403_FORBIDDEN = 4403
WS_4409_ROOM_FULL = 4409
WS_4413_TOO_MANY_ROOMS = 4413


@dataclasses.dataclass(frozen=True)
class ChannelMessageDC:
    """One saved room message, as ``ChannelBox.show_history`` returns it."""

    payload: typing.Any
    uuid: uuid_module.UUID = dataclasses.field(default_factory=uuid_module.uuid4)
    created: datetime.datetime = dataclasses.field(
        default_factory=lambda: datetime.datetime.now(tz=datetime.UTC)
    )
    seq: int | None = None
    room: str = ""
    sender: uuid_module.UUID | None = None
