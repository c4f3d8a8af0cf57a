"""Widgets of the cutover board; each only formats view models from harness.tui.model."""
