"""The error that means "the user's input is wrong": the commands print it briefly and exit with 2."""

import contextlib
import sys

EXIT_BAD_INPUT = 2  # the exit code of every dlrun command on bad configuration or input


class ConfigError(Exception):
    """Bad configuration or input. Each line of the message names a key and what to type instead."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def first_line(error: Exception) -> str:
    """A library error's first line, for a message of one line."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def report(error: ConfigError) -> None:
    """Print a configuration error as a short red panel on stderr, without a traceback."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    body = Text("\n".join(f"• {problem}" for problem in error.problems))
    Console(stderr=True).print(Panel(body, title="dlrun: bad configuration", border_style="red", expand=False))


@contextlib.contextmanager
def exit_on_bad_input():
    """A ConfigError raised inside is reported, and the process ends with EXIT_BAD_INPUT."""
    try:
        yield
    except ConfigError as error:
        report(error)
        sys.exit(EXIT_BAD_INPUT)
