"""The footer of key bindings, recomposed only when what it shows changes.

Textual's Footer rebuilds all its keys whenever the focus moves (the active
bindings may differ per widget). On the board they never do (the tables'
own keys are not shown), and the rebuild cost ~140 ms of CPU per focus change
on the benchmark machine: most of a key press like `o` or `tab`."""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer


class BoardFooter(Footer):
    _shown: tuple | None = None

    def bindings_changed(self, screen: Screen) -> None:
        shown = tuple((binding.key, binding.description, enabled)
                      for (_node, binding, enabled, _tooltip) in screen.active_bindings.values() if binding.show)
        if shown == self._shown:
            return
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            self._shown = shown          # remembered only when Footer will really recompose
        super().bindings_changed(screen)
