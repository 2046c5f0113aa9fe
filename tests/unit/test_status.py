"""``nexios_compat.status`` has every WebSocket name of ``nexios.status``, deprecated ones warning."""

from __future__ import annotations

import warnings

import pytest

from nexios_compat import status


def test_every_close_code_is_named_as_nexios_names_it() -> None:
    for name in status.__all__:
        number = int(name.split("_")[1])
        assert getattr(status, name) == number, name
    assert len(status.__all__) == 15
    assert status.WS_1011_INTERNAL_ERROR == 1011


@pytest.mark.parametrize(
    ("old", "value", "new"),
    [
        ("WS_1004_NO_STATUS_RCVD", 1004, "WS_1005_NO_STATUS_RCVD"),
        ("WS_1005_ABNORMAL_CLOSURE", 1005, "WS_1006_ABNORMAL_CLOSURE"),
    ],
)
def test_deprecated_names_keep_their_value_and_warn(old: str, value: int, new: str) -> None:
    with pytest.warns(DeprecationWarning, match=f"'{old}' is deprecated. Use '{new}' instead.") as caught:
        assert getattr(status, old) == value
    assert caught[0].filename == __file__  # the warning points at the code that used the name


def test_current_names_do_not_warn_and_unknown_names_raise() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from nexios_compat.status import WS_1000_NORMAL_CLOSURE

        assert WS_1000_NORMAL_CLOSURE == 1000
    with pytest.raises(AttributeError):
        status.WS_4999_NOT_A_CODE  # noqa: B018
    assert "WS_1004_NO_STATUS_RCVD" in dir(status)
