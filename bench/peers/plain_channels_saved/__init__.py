"""Plain Channels peer that saves a model row per message before its group_send (issue #3's baseline)."""
