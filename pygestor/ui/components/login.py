"""The sign-in form: the password, checked in constant time; failures slowed, logged and
locked out per client address (:class:`pygestor.ui.auth.LoginThrottle`)."""

from __future__ import annotations

import asyncio

from nicegui import ui

from pygestor.ui import auth, layout


def client_address() -> str:
    """The address the browser's connection comes from (the page's request)."""
    request = ui.context.client.request
    client = getattr(request, "client", None)
    return str(getattr(client, "host", None) or "unknown")


class LoginForm:
    """Built where called; on success the browser goes to ``target``."""

    def __init__(self, password: str, target: str) -> None:
        self.password, self.target = password, target
        self.client = client_address()
        with ui.card().classes("pg-card w-full p-6 gap-4").props("flat"):
            ui.label("Sign in").classes("text-lg font-semibold")
            ui.label("This Pygestor server needs its password.").classes("text-sm pg-muted")
            self.secret = ui.input("Password", password=True, password_toggle_button=True) \
                .props("outlined dense autofocus").classes("w-full").mark("password")
            self.secret.on("keydown.enter", self.attempt)
            self.problem = ui.label("").classes("text-sm text-negative").mark("login-error")
            self.problem.visible = False
            self.button = ui.button("Sign in", on_click=self.attempt) \
                .props("unelevated no-caps").classes("w-full").mark("sign-in")

    async def attempt(self) -> None:
        locked = auth.THROTTLE.locked_for(self.client)
        if locked:
            self.secret.value = ""
            self._say(f"Too many failed sign-ins from your address: try again in "
                      f"{max(1, round(locked / 60))} min.")
            return
        if auth.password_matches(self.secret.value or "", self.password):
            auth.THROTTLE.succeeded(self.client)
            auth.log_in(self.password)
            ui.navigate.to(self.target)
            return
        self.secret.value = ""
        self.button.disable()
        try:
            await asyncio.sleep(auth.THROTTLE.failed(self.client))
        finally:
            self.button.enable()
        locked = auth.THROTTLE.locked_for(self.client)
        self._say("Wrong password. Try again." if not locked else
                  f"Wrong password. Too many failed sign-ins from your address: try again in "
                  f"{max(1, round(locked / 60))} min.")

    def _say(self, text: str) -> None:
        self.problem.set_text(text)
        self.problem.visible = True


def login_page_content(password: str, target: str) -> None:
    ui.page_title("Sign in · Pygestor")
    ui.colors(primary=layout.PRIMARY)
    ui.add_css(layout.CSS)
    with ui.column().classes("absolute-center items-center gap-6 w-[380px] max-w-full px-4"):
        with ui.row().classes("items-center gap-2"):
            ui.html(layout.LOGO_SVG, sanitize=False).classes("w-8 h-8")
            ui.label("Pygestor").classes("text-2xl font-semibold tracking-tight")
        LoginForm(password, target)
