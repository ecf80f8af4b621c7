"""Runs after the other browser tests (files run in name order): the shared app server's log
holds no stack dump. Every browser test before it (hostile uploads included) went through
this one server, so a traceback or a Streamlit warning with a stack printed anywhere in
them fails here."""

from __future__ import annotations

import re

from .harness import StreamlitServer

#: what a stack dump starts with in the log: Python's tracebacks and Streamlit's warnings
STACK = re.compile(r"Traceback \(most recent call last\)|Stack \(most recent call last\)")


def test_server_log_has_no_stack_dump(app_server: StreamlitServer) -> None:
    text = app_server.log_path.read_text(errors="replace")
    found = [m.start() for m in STACK.finditer(text)]
    assert not found, text[max(0, found[0] - 1500):found[0] + 3000] if found else ""
