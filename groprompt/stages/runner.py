"""What every stage's entry point shares: one argument parser, one configuration, one error path.

    def main(argv=None):
        parser = stage_parser(__doc__)
        parser.add_argument("--split", ...)          # only where no configuration key fits
        return run_stage(parser, argv, lambda args, config: work(config, args.split))

User errors (configuration, data, checkpoints, missing files), wherever they are raised (in this process or in a
Ray worker), end as one line on stderr and exit code 2, with no traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from groprompt.config import PATH_KEYS, Config, flatten, load_config, with_absolute_paths
from groprompt.errors import UserError
from groprompt.files import check_store, location

USER_ERROR_EXIT = 2
INTERRUPTED_EXIT = 130  # 128 + SIGINT, as shells report a Ctrl-C
RAY_DATA_TASK_ERROR_LOGGERS = ("ray.data._internal.execution.streaming_executor_state", "ray.data.exceptions")


def stage_parser(description: str | None) -> argparse.ArgumentParser:
    """``--config FILE`` (repeatable, merged in order), ``--address``, and ``key.sub=value`` overrides."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=[], metavar="FILE", help="YAML configuration, repeatable, merged in order")
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster (default: runtime.ray_address, else $RAY_ADDRESS, else a local Ray with its dashboard on 127.0.0.1)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="configuration overrides")
    return parser


def user_error(error: BaseException) -> BaseException | None:
    """The user error behind ``error``: itself, its cause or context, or what a Ray task or worker raised."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (UserError, FileNotFoundError)) and not _is_ray_wrapper(current):
            return current
        pending += [current.__cause__, current.__context__, getattr(current, "cause", None)]
        pending += [failure for failure in (getattr(current, "worker_failures", None) or {}).values() if isinstance(failure, BaseException)]
    return None


def _is_ray_wrapper(error: BaseException) -> bool:
    """Ray re-raises a task's exception as a class deriving from both RayTaskError and the original."""
    return any(cls.__name__ == "RayTaskError" for cls in type(error).__mro__)


RAY_DATA_NOTES = ("Failed to apply UDF transform", "To change retry attempts")  # lines Ray Data appends to a task's error


def describe(error: BaseException) -> str:
    """One line naming the file or setting and the problem (without the retry notes Ray Data appends)."""
    if isinstance(error, FileNotFoundError) and error.filename:
        return f"{error.filename}: not found"
    lines = [line for line in str(error).splitlines() if not line.startswith(RAY_DATA_NOTES)]
    return " ".join(" ".join(lines).split()) or type(error).__name__


def exit_code_of(work: Callable[[], object]) -> int:
    """Run ``work`` (its exit code when it returns an int, else 0); a user error, raised here or in a Ray worker,
    prints one line and gives exit code 2; Ctrl-C prints one line (how to resume, where the stage says) and gives 130."""
    try:
        result = work()
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except KeyboardInterrupt as interrupted:
        print(f"interrupted: {interrupted}" if str(interrupted) else "interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    except Exception as error:
        found = user_error(error)
        if found is None:
            raise
        print(f"error: {describe(found)}", file=sys.stderr)
        return USER_ERROR_EXIT


LOCATION_ARGUMENTS = ("videos", "queries", "out", "checkpoint", "png_dir", "submission", "work")


def argument_uris(args: argparse.Namespace) -> list[str]:
    """The object-storage URIs given on the command line (``--videos``, ``--queries``, ``--out``, ``--checkpoint``...)."""
    values = [getattr(args, name, None) for name in LOCATION_ARGUMENTS]
    flat = [item for value in values for item in (value if isinstance(value, list) else [value])]
    return [item for item in flat if isinstance(item, str) and "://" in item]


def run_stage(
    parser: argparse.ArgumentParser,
    argv: list[str] | None,
    work: Callable[[argparse.Namespace, Config], object],
    default_configs: tuple[str | Path, ...] = (),
) -> int:
    """Parse ``argv``, load the configuration (``default_configs`` without ``--config``), join or start Ray, and
    run ``work`` under ``exit_code_of``."""
    from groprompt.cluster import init_ray

    args = parser.parse_args(argv)

    def stage() -> object:
        config = with_absolute_paths(load_config(args.config or list(default_configs), args.overrides))
        settings = flatten(config)
        for value in [settings[key] for key in PATH_KEYS] + argument_uris(args):  # refused before Ray starts:
            if value is not None:  # a missing bucket, an unreachable store
                check_store(location(value))
        init_ray(args.address or config.runtime.ray_address)
        for name in RAY_DATA_TASK_ERROR_LOGGERS:  # the stage reports a failed task itself: one line, or its traceback
            logging.getLogger(name).setLevel(logging.CRITICAL)
        return work(args, config)

    return exit_code_of(stage)
