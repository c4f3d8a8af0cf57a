"""The cutover board application.

The app owns the data and the slow work; screens and widgets only show it:

- one :class:`~harness.tui.model.BoardData` is built per refresh
  (harness.tui.loader: one store query, the gate, the history analysis);
- a timer polls ``Store.data_version()`` (one cheap PRAGMA) and reloads in a
  worker thread when another process (``cutover schedule``, ``cutover
  signoff``) wrote, so the board follows the parallel run by itself;
- "run now" runs the readiness suite in a worker thread with live progress;
  the UI stays responsive and the result lands in the history like any run;
- sign-offs go through ``Store.signoff``: the same audit trail as
  ``cutover signoff``.

Without a profile the board opens on the fleet (every site of the database,
harness.tui.screens.fleet); Enter opens a site's board with the profile
stored with the site's latest run (``harness.fleet.site_profile``, the one
`cutover fleet` judges it by), Escape goes back. A site opened from the
fleet is measured by its own probe, never from here: "run now" is off.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from typing import Callable, Iterable

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from harness import fleet
from harness.store import Store, StoreError, StoreUnavailable
from harness.tui.loader import BoardLoader, placeholder
from harness.tui.model import BoardData, ChecklistRow
from harness.tui.runs import RunRequest, default_runner
from harness.tui.screens.fleet import FleetScreen
from harness.tui.screens.main import MainScreen
from harness.tui.screens.signoff import SignoffScreen

UTC = dt.timezone.utc
POLL_S = 2.0                     # data_version poll: one PRAGMA, microseconds
STALE_AFTER = dt.timedelta(minutes=5)   # reload anyway: "last 24 h" and day counts move with the clock


class BoardApp(App):
    TITLE = "cutover board"
    BINDINGS = [Binding("ctrl+c", "quit", "Quit", show=False, priority=True)]

    def __init__(self, profile, db_path, *, now: dt.datetime | Callable[[], dt.datetime] | None = None,
                 window: dt.timedelta | None = None, poll_s: float = POLL_S,
                 runner: Callable[[RunRequest], object] | None = None, quick_runs: bool = False,
                 background_open: bool = False, signoffs_allowed: bool = True) -> None:
        super().__init__()
        # a board frozen at a past time (`cutover board --as-of`) takes no sign-offs: they
        # are stamped with the board's clock (gate --as-of counts only what was known then),
        # and an audit trail must not be back-dated
        self.signoffs_allowed = signoffs_allowed
        self.profile = profile
        self.db_path = db_path
        self.store = Store(db_path)
        if isinstance(now, dt.datetime):
            fixed = now
            self._clock: Callable[[], dt.datetime] = lambda: fixed
        else:
            self._clock = now or (lambda: dt.datetime.now(UTC))
        self.window = window
        self.poll_s = poll_s
        self.runner = runner or default_runner
        self.quick_runs = quick_runs
        # The loader reads through its own connection: a background reload of 30 days
        # then never holds the lock of the connection the UI thread polls and writes with.
        self._reader = Store(db_path)
        self._loading = False
        self._unreachable = False           # the database server went away (notified once)
        self.fleet_mode = profile is None      # no profile: the fleet first, a site's board on Enter
        self.runs_allowed = not self.fleet_mode
        self.fleet_sites: list[fleet.SiteStatus] = []
        self._fleet_version: int | None = None
        # None while the fleet is shown (no site open)
        self.loader: BoardLoader | None = None
        self.data: BoardData | None = None
        if self.fleet_mode:
            if not background_open:
                self._fleet_version = self.store.data_version()
                self.fleet_sites = fleet.fleet(self._reader, now=self._clock())
        else:
            self.loader = BoardLoader(profile, self._reader, window)
            # background_open (the CLI): first frame at once with the circuits' names, the
            # figures a moment later; else (tests, snapshots) the data is there before mount
            self.data = (placeholder(profile, self._clock()) if background_open else
                                    self.loader.load(self._clock(),
                                                     version=self.store.data_version(self.profile.site)))
        self._loaded_at = self._clock()
        self._last_by = os.environ.get("CUTOVER_SIGNOFF_BY", "")
        self._run_stop: threading.Event | None = None
        self.running: list[str] = []
        self.reloads = 0              # how many times the data was reloaded (tests, benchmark)

    # ------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        if self.poll_s > 0:
            self.set_interval(self.poll_s, self._poll)
        if self.fleet_mode:
            loc = self.store.location      # a file by its name (the path is in the shell's history)
            where = os.path.basename(loc.target) if loc.kind == "sqlite" else str(loc)
            self.push_screen(FleetScreen(self.fleet_sites, self._clock(), where))
            self.title = "cutover board: fleet"
            if self._fleet_version is None:
                self.call_after_refresh(self.reload_in_background)
            return
        self._mount_site()

    def _mount_site(self) -> None:
        assert self.profile is not None and self.data is not None
        # pushed (not get_default_screen) so Textual loads the screen's .tcss
        self.push_screen(MainScreen(self.data))
        self.title = f"cutover board: {self.profile.site}"
        if not self.data.loaded:
            # after the first frame: the read holds the GIL in Python parts and would delay it
            self.call_after_refresh(self.reload_in_background)

    # ------------------------------------------------------------ the fleet

    def open_site(self, site: str) -> None:
        """Enter on the fleet: the site's board, judged by the profile stored with
        its latest run (a central database holds no profile files)."""
        profile, why = fleet.site_profile(self._reader, site)
        if profile is None:
            self.notify(f"cannot open {site}: {why}", severity="error")
            return
        self.profile = profile
        self.loader = BoardLoader(profile, self._reader, self.window)
        self.data = placeholder(profile, self._clock())
        self._loading = False
        self._mount_site()

    def action_close_site(self) -> None:
        """Escape on a site opened from the fleet: back to the fleet."""
        if not self.fleet_mode or self.profile is None:
            return
        while not isinstance(self.screen, FleetScreen):
            self.pop_screen()
        self.profile, self.loader, self.data = None, None, None
        self._loading = False
        self.title = "cutover board: fleet"
        self.reload_in_background()

    @work(thread=True, exclusive=True, group="load")
    def _fleet_worker(self, version: int) -> None:
        now = self.now()
        try:
            sites = fleet.fleet(self._reader, now=now)
        except Exception as exc:     # noqa: BLE001 - classified: a store fault, or our bug with its traceback file
            self._to_ui(self._load_failed, self._failure(exc, "board: fleet"))
            return
        self._to_ui(self._apply_fleet, sites, version, now)

    def _apply_fleet(self, sites: list, version: int, now: dt.datetime) -> None:
        self._loading = False
        if self.profile is not None:          # a site was opened meanwhile
            return
        self.fleet_sites, self._fleet_version, self._loaded_at = sites, version, now
        self.reloads += 1
        for screen in self.screen_stack:
            if isinstance(screen, FleetScreen):
                screen.show(sites, now)

    def on_unmount(self) -> None:
        # quitting during a run-now: the runner stops at its next step/probe check and
        # still writes what it measured through self.store, so that one stays open
        if self._run_stop is not None:
            self._run_stop.set()
        else:
            self.store.close()
        self._reader.close()

    @property
    def main(self) -> MainScreen:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        raise LookupError("main screen not mounted")

    def now(self) -> dt.datetime:
        return self._clock()

    # ------------------------------------------------------------ refresh

    def _poll(self) -> None:
        if self._loading:
            return
        try:
            version = self.store.data_version(self.profile.site if self.profile else None)
        except StoreUnavailable as exc:   # the server went away: say so once, keep the last data on screen
            if not self._unreachable:
                self._unreachable = True
                self.notify(f"could not read the history: {exc}", severity="error")
            return
        except self._store_faults():     # a locked or vanished file must not kill the board
            return
        if self._unreachable:             # the server is back (the store reconnected): read it again
            try:                          # the loader's connection died too, unused since: renew it now
                self._reader.reconnect()
            except self._store_faults():
                return                    # gone again already: the next poll tries again
            self._unreachable = False
            self.notify("the history database is reachable again")
            self.reload_in_background()
            return
        shown = self.data.data_version if self.data is not None else self._fleet_version
        if version != shown or self.now() - self._loaded_at >= STALE_AFTER:
            self.reload_in_background()

    def reload_in_background(self) -> None:
        if self._loading:
            return
        self._loading = True
        # the version is read on this connection before the data: a write in between
        # shows up as a new version at the next poll and is read then
        try:
            version = self.store.data_version(self.profile.site if self.profile else None)
        except StoreUnavailable as exc:   # e.g. "r" pressed while the server is down
            self._load_failed(str(exc))
            return
        if self.profile is None:
            self._fleet_worker(version)
            return
        self._load_worker(version)

    @work(thread=True, exclusive=True, group="load")
    def _load_worker(self, version: int) -> None:
        loader = self.loader
        assert loader is not None
        try:
            data = loader.load(self.now(), version=version)
        except Exception as exc:     # noqa: BLE001 - classified: a store fault, or our bug with its traceback file
            self._to_ui(self._load_failed, self._failure(exc, "board: load"))
            return
        self._to_ui(self._apply_if_current, loader, data)

    def _apply_if_current(self, loader: BoardLoader, data: BoardData) -> None:
        if loader is not self.loader:        # back to the fleet (or another site) meanwhile
            self._loading = False
            return
        self._apply(data)

    def _store_faults(self) -> tuple[type[BaseException], ...]:
        """What reading or writing the history can meet that is not a bug of ours:
        the store's own errors (server gone, disk full), the database engine's
        (locked past busy_timeout) and the operating system's (file vanished)."""
        errors: list[type[BaseException]] = [StoreError, OSError]
        for store in (self.store, self._reader):
            if store is not None:
                errors.append(store.Error)
        return tuple(errors)

    def _failure(self, exc: Exception, context: str) -> str:
        """One line for the board: a store fault as it is; anything else is a bug
        of ours, said as one, with its traceback in a file (as `cutover` exits 70),
        never shown as if the history or the network had failed."""
        if isinstance(exc, self._store_faults()):
            return f"{type(exc).__name__}: {exc}"
        from harness.runner import write_traceback
        path = write_traceback(exc, context)
        return (f"internal error: {type(exc).__name__}: {exc} (a bug in cutover, not a network fault; "
                f"traceback written to {path}; please report it)")

    def _load_failed(self, error: str) -> None:
        self._loading = False
        self.notify(f"could not read the history: {error}", severity="error")

    def reload_signoffs(self) -> None:
        """After our own sign-off: only the gate is evaluated again (milliseconds)."""
        assert self.loader is not None
        self._apply(self.loader.refresh_signoffs(self.now(), self.store.signoffs(self.profile.site, self.now()),
                                                 version=self.store.data_version(self.profile.site)))

    def _apply(self, data: BoardData) -> None:
        self._loading = False
        self.data = data
        self._loaded_at = self.now()
        self.reloads += 1
        self.main.show(data)
        for name in self.running:
            panel = self.main.panel(name)
            if panel is not None and not panel.running:
                panel.running = "queued"

    def action_reload(self) -> None:
        self.reload_in_background()
        self.notify("reloading from the database", timeout=2)

    # ------------------------------------------------------------ help, palette

    def action_help(self) -> None:
        from harness.tui.screens.help import HelpScreen   # Markdown loads only when asked (~70 ms)
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        main = self.main if any(isinstance(s, MainScreen) for s in self.screen_stack) else None
        if main is None or self.profile is None:
            return
        selected = main.selected_circuit
        yield SystemCommand(f"Run now: {selected}", "Check the selected circuit now", self.action_run_selected)
        yield SystemCommand("Run all circuits now", "Check every circuit of the profile now", self.action_run_all)
        for c in self.profile.circuits:
            yield SystemCommand(f"Run now: circuit {c.name}", f"Check {c.name} ({c.role}) now",
                                lambda n=c.name: self.start_run([n]), discover=False)
        yield SystemCommand("Sign off checklist item", "Sign off the item under the cursor",
                            main.action_sign_off)
        yield SystemCommand("Revoke sign-off", "Revoke the sign-off of the item under the cursor",
                            main.action_revoke)
        yield SystemCommand("Correct sign-off", "Correct the entry of the item under the cursor (the old one "
                            "stays, marked superseded)", main.action_correct)
        for item in self.profile.cutover.checklist:
            row = next((r for r in (self.data.checklist if self.data else []) if r.id == item.id), None)
            if row is not None:
                yield SystemCommand(f"Sign off: {item.id}", item.title,
                                    lambda r=row: self.sign_off_item(r, revoke=False), discover=False)
                yield SystemCommand(f"Revoke: {item.id}", item.title,
                                    lambda r=row: self.sign_off_item(r, revoke=True), discover=False)
        yield SystemCommand("Show outages", "The outage and SLA-claim log", main.action_toggle_outages)
        yield SystemCommand("Go to checklist", "Focus the checklist", main.action_focus_checklist)
        yield SystemCommand("Reload", "Read the database again", self.action_reload)
        yield SystemCommand("Help", "Keys and what the board shows", self.action_help)

    # ------------------------------------------------------------ sign-off

    def sign_off_item(self, row: ChecklistRow | None, revoke: bool = False, correct: bool = False) -> None:
        """Sign off, revoke (``revoke``) or correct the current entry (``correct``:
        the old entry stays in the audit trail, marked superseded)."""
        if not self.signoffs_allowed:
            self.notify("this board shows a past time (--as-of): sign off in a live board or with "
                        "`cutover signoff`", severity="warning")
            return
        if row is None:
            self.notify("select a checklist item first", severity="warning")
            return
        if row.kind != "manual":
            self.notify(f"'{row.title}' is automatic: it follows the measurements and cannot be signed off",
                        severity="warning")
            return
        if revoke and row.status != "signed off":
            self.notify(f"'{row.id}' is not signed off: nothing to revoke", severity="warning")
            return
        if correct and not row.by:
            self.notify(f"'{row.id}' has no entry to correct: sign it off with s", severity="warning")
            return

        def done(result: tuple[str, str] | None) -> None:
            if result is None:
                return
            by, note = result
            try:
                if correct:
                    self.store.correct_signoff(self.profile.site, row.id, by, note, at=self.now())
                else:
                    self.store.signoff(self.profile.site, row.id, by, note, revoke=revoke, at=self.now())
            except self._store_faults() as exc:   # e.g. database locked for longer than busy_timeout
                self.notify(f"not saved: {exc}", severity="error")
                return
            self._last_by = by
            self.reload_signoffs()
            self.notify(f"{'corrected' if correct else 'revoked' if revoke else 'signed off'}: {row.id} by {by}")

        self.push_screen(SignoffScreen(row, revoke=revoke, last_by=self._last_by, correct=correct), done)

    # ------------------------------------------------------------ run now

    def action_run_selected(self) -> None:
        self.start_run([self.main.selected_circuit])

    def action_run_all(self) -> None:
        self.start_run([c.name for c in self.profile.circuits])

    def start_run(self, names: list[str]) -> None:
        if not self.runs_allowed:
            self.notify("opened from the fleet: this site is measured by its own probe "
                        "(cutover schedule there), not from this machine", severity="warning")
            return
        if self.running:
            self.notify(f"a run is in progress ({', '.join(self.running)})", severity="warning")
            return
        self.running = list(names)
        self._run_stop = threading.Event()
        for name in names:
            panel = self.main.panel(name)
            if panel is not None:
                panel.running = "queued"
        self._run_worker(RunRequest(self.profile, list(names), self.store, self._progress_from_thread,
                                    self._run_stop, quick=self.quick_runs))

    @work(thread=True, exclusive=True, group="run-now")
    def _run_worker(self, request: RunRequest) -> None:
        error = None
        try:
            self.runner(request)
        except Exception as exc:   # noqa: BLE001 - classified: a store fault, or our bug with its traceback file
            error = self._failure(exc, "board: run now")
        self._to_ui(self._run_finished, request.circuits, error)

    def _progress_from_thread(self, circuit: str, text: str) -> None:
        self._to_ui(self._show_progress, circuit, text)

    def _to_ui(self, callback, *args) -> None:
        """call_from_thread, unless the board has quit meanwhile (a run then
        stops at its next check of the stop event; the stored part is kept)."""
        if not self.is_running:
            return
        try:
            self.call_from_thread(callback, *args)
        except RuntimeError:       # app no longer running
            pass

    def _show_progress(self, circuit: str, text: str) -> None:
        panel = self.main.panel(circuit)
        if panel is not None:
            panel.running = text

    def _run_finished(self, names: list[str], error: str | None) -> None:
        self.running = []
        self._run_stop = None
        for name in names:
            panel = self.main.panel(name)
            if panel is not None:
                panel.running = ""
        if error:
            self.notify(f"run failed: {error}", severity="error", timeout=10)
        else:
            self.notify(f"run finished: {', '.join(names)}")
        self.reload_in_background()
