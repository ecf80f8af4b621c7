"""The ``lrp-explorer`` command: one tree for the app and the engine's commands.

    lrp-explorer                      start the app (the same as ``lrp-explorer run``)
    lrp-explorer run [streamlit args] start the app, e.g. ``--server.address 0.0.0.0``
    lrp-explorer explain …            the engine's commands (``python -m lrp_engine …``)
    lrp-explorer experiment …
    lrp-explorer localisation …
    lrp-explorer batch …

Streamlit reads ``.streamlit/config.toml`` from the working directory only, so ``run`` passes
the app's safe defaults (:data:`STREAMLIT_SETTINGS`, the same as the repository's
``.streamlit/config.toml``) as flags; a flag given on the command line wins over its default.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

#: the repository's .streamlit/config.toml as flags (tests/test_packaging.py keeps them equal)
STREAMLIT_SETTINGS: dict[str, str] = {
    "server.address": "127.0.0.1",
    "server.port": "8501",
    "server.headless": "true",
    "server.maxUploadSize": "600",
    "server.fileWatcherType": "none",
    "server.runOnSave": "false",
    "browser.gatherUsageStats": "false",
    "client.showErrorDetails": "none",
    "client.toolbarMode": "minimal",
    "runner.fastReruns": "true",
    "runner.postScriptGC": "false",
    "theme.base": "light",
}

ENGINE_COMMANDS = ("explain", "experiment", "localisation", "batch")

USAGE = """usage: lrp-explorer [COMMAND] ...

LRP Explorer: Layer-wise Relevance Propagation and Bayesian LRP for image classifiers.

commands:
  run            start the app (the default), e.g. lrp-explorer run --server.port 8600;
                 any `streamlit run` flag is passed on and wins over the safe defaults
                 (127.0.0.1 only, 600 MB uploads, no telemetry, no error details)
  explain        explain one input (python -m lrp_engine explain)
  experiment     run a reproducible experiment (python -m lrp_engine experiment)
  localisation   does the heatmap point at the lesion? (python -m lrp_engine localisation)
  batch          explain and score a whole data set, locally or on Ray
                 (python -m lrp_engine batch)

`lrp-explorer COMMAND --help` describes each command.
"""


def streamlit_command(args: Sequence[str] = ()) -> list[str]:
    """The ``streamlit run`` command line that starts the app with ``args`` (flags of the
    form ``--name value`` or ``--name=value`` replace the default of the same name)."""
    from . import APP

    given = {a[2:].split("=", 1)[0] for a in args if a.startswith("--")}
    flags: list[str] = []
    for name, value in STREAMLIT_SETTINGS.items():
        if name not in given:
            flags += [f"--{name}", value]
    return [sys.executable, "-m", "streamlit", "run", str(APP), *flags, *args]


def run_app(args: Sequence[str] = ()) -> int:
    """Start the app in the foreground; returns Streamlit's exit status."""
    try:
        import streamlit  # noqa: F401
    except ImportError:
        print("lrp-explorer: the app needs Streamlit: pip install \"lrp-explorer[app]\"",
              file=sys.stderr)
        return 1
    cmd = streamlit_command(args)
    if os.name == "posix":  # become Streamlit: signals (Ctrl+C, SIGTERM) reach the server
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(cmd[0], cmd)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lrp-explorer``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] == "run":
        return run_app(argv[1:])
    if argv[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if argv[0] in ENGINE_COMMANDS:
        from lrp_engine.cli import main as engine_main

        return engine_main(argv, prog="lrp-explorer")
    if argv[0].startswith("--"):  # `lrp-explorer --server.port 8600`: streamlit flags
        return run_app(argv)
    print(USAGE, end="", file=sys.stderr)
    print(f"lrp-explorer: unknown command {argv[0]!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
