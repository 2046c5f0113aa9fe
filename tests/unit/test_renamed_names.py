"""Names of the previous release keep working for one release, each with a DeprecationWarning."""

from __future__ import annotations

import pytest
from django.test import override_settings

from nexios_compat.conf import get_config
from nexios_compat.stores import membership, services
from nexios_compat.stores.history import DatabaseHistoryStore, get_history_store
from nexios_compat.stores.membership import DatabaseMembershipStore, get_membership_store


def test_presence_store_setting_is_read_as_membership_store_with_a_warning() -> None:
    path = "nexios_compat.stores.membership.DatabaseMembershipStore"
    with override_settings(NEXIOS_COMPAT={"PRESENCE_STORE": path}):
        with pytest.warns(DeprecationWarning, match="MEMBERSHIP_STORE"):
            config = get_config()
        assert config["MEMBERSHIP_STORE"] == path
        assert "PRESENCE_STORE" not in config


def test_old_dotted_store_paths_load_the_moved_classes_with_a_warning() -> None:
    old = {
        "HISTORY_STORE": "nexios_compat.history.DatabaseHistoryStore",
        "PRESENCE_STORE": "nexios_compat.presence.DatabasePresenceStore",
    }
    with override_settings(NEXIOS_COMPAT=old):
        with pytest.warns(DeprecationWarning) as caught:
            assert isinstance(get_history_store(), DatabaseHistoryStore)
            assert isinstance(get_membership_store(), DatabaseMembershipStore)
        messages = " ".join(str(w.message) for w in caught)
        assert "nexios_compat.stores.history.DatabaseHistoryStore" in messages
        assert "nexios_compat.stores.membership.DatabaseMembershipStore" in messages


def test_old_class_names_are_the_new_classes_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="MembershipService"):
        assert services.PresenceService is services.MembershipService
    with pytest.warns(DeprecationWarning, match="BaseMembershipStore"):
        assert membership.BasePresenceStore is membership.BaseMembershipStore
    with pytest.raises(AttributeError):
        _ = membership.NoSuchStore
