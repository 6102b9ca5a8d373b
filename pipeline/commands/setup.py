"""What the commands share: the settings, the Redis (configured or embedded), the sandbox,
the worker app and the store, and the one place where errors become a command's result.

Commands never import each other; whatever two of them need lives here. Celery, redis and
the sandbox are imported inside the functions so ``onboard --help`` and ``onboard validate``
never load them.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec

from pydantic import SecretStr, ValidationError

from pipeline.core.errors import ServerError, UserError, setting_error
from pipeline.core.results import CommandResult
from pipeline.core.settings import Settings

if TYPE_CHECKING:
    from celery import Celery

    from workers.state import BatchStore

# Chunks in progress at once in the in-process worker of ``run`` (rows of each chunk run
# concurrently on top of that).
DEFAULT_CHUNKS_IN_PROGRESS = 4

P = ParamSpec("P")


def command(func: Callable[P, CommandResult]) -> Callable[P, CommandResult]:
    """Run a command, turning a user mistake or an unreachable server into its result.

    This is where the command layer maps foreign errors into the tree, once: a Redis or a
    broker that cannot be reached becomes a one-line :class:`ServerError`.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> CommandResult:
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            return CommandResult.unusable(str(exc))
        except Exception as exc:
            server = server_error(exc)
            if server is None:
                raise
            return CommandResult.unusable(str(server))

    return wrapper


def server_error(exc: BaseException) -> ServerError | None:
    """A Redis or broker failure as a one-line :class:`ServerError`; None for anything else.

    The classes are looked up among the loaded modules: a failure of redis or kombu means
    they are loaded, and ``onboard validate`` never pays for importing them.
    """
    kinds = tuple(
        kind for module, name in (("redis.exceptions", "RedisError"),
                                  ("kombu.exceptions", "OperationalError"))
        if (kind := getattr(sys.modules.get(module), name, None)) is not None
    )
    if not kinds or not isinstance(exc, kinds):
        return None
    # redis-py and kombu name the host and port, never the password, in these messages.
    reason = " ".join(str(exc).splitlines()) or type(exc).__name__
    return ServerError(f"Redis: {reason}")


def load_settings() -> Settings:
    """Settings from the environment and ``.env``; a bad one is a one-line SettingsError."""
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        raise setting_error(first["loc"], first["msg"]) from None


def check_timing(settings: Settings) -> None:
    """The worker time limits cover the slowest possible row (see ``workers.app``)."""
    from workers.app import check_timing as check

    check(settings)


def with_sandbox(settings: Settings, base_url: str) -> Settings:
    """The settings pointed at a sandbox with its default credentials."""
    from sandbox.launcher import CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME

    partner = settings.partner.model_copy(update={
        "base_url": base_url, "client_id": CLIENT_ID,
        "client_secret": SecretStr(CLIENT_SECRET), "username": USERNAME,
        "password": SecretStr(PASSWORD), "scope": settings.partner.scope or "sandbox",
        "verify_tls": False, "state_scope": "local-sandbox",
    })
    return settings.model_copy(update={"partner": partner})


def require_partner(settings: Settings, sandbox: bool) -> None:
    """A real (non-sandbox) run needs the partner credentials: name every missing one."""
    if not sandbox and (missing := settings.partner.missing()):
        raise UserError(
            f"missing partner settings: {', '.join(missing)} (set them, or use --sandbox)"
        )


def require_redis(settings: Settings, command_name: str) -> str:
    """The shared Redis's URL; commands that hand work to other processes need one."""
    if not settings.redis_url:
        raise UserError(
            f"onboard {command_name} needs a shared Redis: set ONBOARD_REDIS_URL "
            "(or use onboard run, which starts its own)"
        )
    return settings.redis_url


@dataclass(slots=True)
class RedisInfo:
    """Where the state and the queue live, and whether this process started that Redis."""

    redis_url: str
    broker_url: str
    embedded: bool


@contextlib.contextmanager
def open_redis(settings: Settings) -> Iterator[RedisInfo]:
    """The configured Redis, or the embedded one on the state directory."""
    if settings.redis_url:
        yield RedisInfo(settings.redis_url, settings.redis_url, embedded=False)
        return
    from workers.embedded import EmbeddedRedisError, embedded_redis

    p = settings.pipeline
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(embedded_redis(p.state_dir, persist=p.embedded_persist))
        except (EmbeddedRedisError, OSError) as exc:
            raise ServerError(f"embedded Redis: {exc}") from None
        yield RedisInfo(server.redis_url, server.broker_url, embedded=True)


def make_store(redis_url: str, settings: Settings) -> BatchStore:
    """The batch store on ``redis_url`` with the pipeline's TTL and key prefix."""
    import redis

    from workers.state import BatchStore

    p = settings.pipeline
    return BatchStore(
        redis.Redis.from_url(redis_url), ttl_seconds=p.state_ttl_seconds, prefix=p.key_prefix
    )


@contextlib.contextmanager
def open_store(settings: Settings) -> Iterator[BatchStore]:
    """The batch store on the configured Redis, else on the embedded one's state directory
    (so ``status`` and ``report`` work after an embedded ``run``)."""
    with open_redis(settings) as info:
        store = make_store(info.redis_url, settings)
        try:
            yield store
        finally:
            store.close()


def shared_app(settings: Settings, command_name: str) -> tuple[str, Celery]:
    """The shared Redis's URL and the worker app on it (``submit``, ``worker``, ``recover``)."""
    from workers.tasks import make_worker_app

    url = require_redis(settings, command_name)
    check_timing(settings)
    return url, make_worker_app(settings, broker_url=url, redis_url=url)


@dataclass(slots=True)
class PipelineEnv:
    """What a command that sends rows works with: the settings (pointed at the sandbox with
    ``--sandbox``), the Celery app, the batch store and the Redis they live on."""

    settings: Settings
    app: Celery
    store: BatchStore
    redis: RedisInfo
    sandbox: bool
    stack: contextlib.ExitStack[bool | None]

    @property
    def local(self) -> bool:
        """Only this process can work the queue: embedded Redis, or a sandbox only it knows."""
        return self.redis.embedded or self.sandbox

    def start_worker(self, concurrency: int = DEFAULT_CHUNKS_IN_PROGRESS) -> None:
        """A real in-process Celery worker (threads pool) until the environment closes."""
        from workers.embedded import in_process_worker

        self.stack.enter_context(
            in_process_worker(self.app, pool="threads", concurrency=concurrency)
        )


@contextlib.contextmanager
def open_pipeline(settings: Settings, *, sandbox: bool = False) -> Iterator[PipelineEnv]:
    """Check the settings, start the sandbox (``sandbox``) and the Redis (configured or
    embedded), make the worker app and the store; close all of them, in reverse, on exit.

    Shared by ``run``, ``rerun`` and ``watch`` so the three start the same way.
    """
    from workers.tasks import close_runtime, make_worker_app

    require_partner(settings, sandbox)
    check_timing(settings)
    with contextlib.ExitStack() as stack:
        if sandbox:
            from sandbox.launcher import run_sandbox

            handle = stack.enter_context(run_sandbox())
            stack.callback(handle.close)
            settings = with_sandbox(settings, handle.base_url)
        info = stack.enter_context(open_redis(settings))
        app = make_worker_app(settings, broker_url=info.broker_url, redis_url=info.redis_url)
        stack.callback(close_runtime, app)
        store = make_store(info.redis_url, settings)
        stack.callback(store.close)
        yield PipelineEnv(settings, app, store, info, sandbox, stack)
