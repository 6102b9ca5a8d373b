"""Command line of the sandbox (``python -m sandbox``, ``onboard sandbox``).

One option per ``SandboxConfig`` knob, generated from the model so ``--help`` documents every
knob with its default; plus where to listen. A bad knob, data file or port gives one line
on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
import sys
import threading
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from pipeline.core.errors import ServerError
from sandbox.config import SandboxConfig

EXIT_USAGE = 2


class ListenError(ServerError):
    """The address cannot be listened on (port taken, bad host)."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (usage goes to ``--help``)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message}\n")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _base_type(annotation: Any) -> Any:
    """The non-None member of ``X | None``, else the annotation itself."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return members[0]
    return annotation


def build_parser(prog: str = "python -m sandbox") -> argparse.ArgumentParser:
    """The argument parser: listening options plus one option per knob."""
    parser = _Parser(
        prog=prog,
        description=(
            "Run the DRAP partner sandbox: token, lookup, onboarding and status calls on "
            "loopback, with scenarios, fault injection and counters at /_sandbox/stats. Every "
            "knob can also be changed at run time with POST /_sandbox/config {knob: value}."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    listen = parser.add_argument_group("listening")
    listen.add_argument("--host", default="127.0.0.1", help="address to listen on")
    listen.add_argument("--port", type=int, default=8900, help="port to listen on; 0 = any free")
    listen.add_argument(
        "--port-file", type=Path, default=None, help="write the bound port to this file"
    )
    listen.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="exit when the parent process goes away (for test harnesses)",
    )
    knobs = parser.add_argument_group("knobs")
    for name, info in SandboxConfig.model_fields.items():
        kind = _base_type(info.annotation)
        default = info.default
        if isinstance(default, SecretStr):
            default = default.get_secret_value()
        common: dict[str, Any] = {
            "dest": name,
            "default": argparse.SUPPRESS,
            "help": f"{info.description} (default: {default})",
        }
        if kind is bool:
            knobs.add_argument(_option(name), action=argparse.BooleanOptionalAction, **common)
        elif kind in (int, float):
            knobs.add_argument(_option(name), type=kind, metavar=kind.__name__.upper(), **common)
        elif kind is Path:
            knobs.add_argument(_option(name), type=Path, metavar="PATH", **common)
        else:
            knobs.add_argument(_option(name), metavar="TEXT", **common)
    return parser


def knobs_to_argv(knobs: Mapping[str, Any]) -> list[str]:
    """Command-line arguments that set ``knobs`` (the inverse of the parser)."""
    argv: list[str] = []
    for name, value in knobs.items():
        if name not in SandboxConfig.model_fields:
            raise ValueError(f"unknown sandbox knob {name!r}")
        if value is None:
            continue
        if isinstance(value, bool):
            argv.append(_option(name) if value else "--no-" + name.replace("_", "-"))
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        argv += [_option(name), str(value)]
    return argv


def describe(exc: ValidationError) -> str:
    """One line naming each bad knob (as its option) and the problem."""
    return "; ".join(
        f"{_option(str(error['loc'][0])) if error['loc'] else 'config'}: {error['msg']}"
        for error in exc.errors()
    )


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening before the port is announced lets early clients queue, not be refused.
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _watch_parent() -> None:
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def serve(config: SandboxConfig, host: str, port: int, port_file: Path | None = None) -> None:
    """Start uvicorn with the sandbox app on host:port until interrupted (blocking)."""
    import uvicorn

    from sandbox.app import create_app

    app = create_app(config)
    try:
        sock = _bind(host, port)
    except OSError as exc:
        raise ListenError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
    bound = int(sock.getsockname()[1])
    uv_config = uvicorn.Config(
        app,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        log_level="warning",
        access_log=False,
        lifespan="off",
        # A hanging fault must not hold a stop for timeout_hang_s.
        timeout_graceful_shutdown=1,
    )
    if port_file is not None:
        partial = port_file.with_name(port_file.name + ".partial")
        partial.write_text(str(bound), encoding="ascii")
        partial.replace(port_file)
    print(f"sandbox listening on http://{host}:{bound}", file=sys.stderr, flush=True)
    uvicorn.Server(uv_config).run(sockets=[sock])


def main(argv: Sequence[str] | None = None, prog: str = "python -m sandbox") -> int:
    """Parse the command line and run the sandbox; return the exit code."""
    from pipeline.core.masterdata import MasterDataError
    from sandbox.scenarios import ScenarioError

    args = vars(build_parser(prog).parse_args(argv))
    host, port = args.pop("host"), args.pop("port")
    port_file, exit_with_parent = args.pop("port_file"), args.pop("exit_with_parent")
    try:
        config = SandboxConfig.model_validate(args)
    except ValidationError as exc:
        print(f"{prog}: {describe(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if exit_with_parent:
        _watch_parent()
    try:
        serve(config, host, port, port_file)
    except (MasterDataError, ScenarioError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ListenError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        pass
    return 0
