"""The project's one error tree and its exit codes.

Every error the project raises on purpose derives from :class:`OnboardError`. Those a user
can fix (a bad file, option or setting, an unreachable server) derive from
:class:`UserError`: the command layer turns them into exit code 2 and one line, never a
traceback. Foreign errors (OSError, pandas, calamine, redis, kombu) are mapped into the tree
once per layer: ingest for files it reads, reports for files it writes, the command layer
for servers.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a command's exit status tells a script or a clerk."""

    DONE = 0
    """Every row valid (validate) or onboarded/already there (the batch commands)."""
    OTHER = 1
    """The command ran, but rows ended otherwise, or the batch is not complete yet."""
    UNUSABLE = 2
    """A file, an option, a setting or a server cannot be used; one line says which."""


class OnboardError(Exception):
    """Root of every error the project raises on purpose."""


class UserError(OnboardError):
    """Something the user can fix; its message is one line naming what and where."""

    exit_code = ExitCode.UNUSABLE

    def __str__(self) -> str:
        # One line whatever a library put into the message it was built from.
        return " ".join(super().__str__().splitlines())


class InputError(UserError):
    """The input file (or its column map) cannot be read as a table of customers."""


class SettingsError(UserError):
    """A setting (environment or ``.env``) has a value that cannot be used."""


class ServerError(UserError):
    """A server the command needs (Redis, the partner) cannot be reached or refused us."""


def setting_error(location: tuple[int | str, ...], message: str, *, prefix: str = "ONBOARD_"
                  ) -> SettingsError:
    """The one-line error of a bad setting, named as the user sets it (``ONBOARD_X__Y``)."""
    name = "__".join(str(part) for part in location).upper()
    return SettingsError(f"bad setting {prefix}{name}: {message}")


def file_error(exc: OSError, where: object) -> InputError:
    """An OSError as the one-line error of the file it concerns (``where`` if it names none)."""
    return InputError(f"{exc.filename or where}: {exc.strerror or exc}")
