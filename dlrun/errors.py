"""The error that means "the user's input is wrong": the CLI prints it briefly and exits with 2."""

EXIT_BAD_INPUT = 2  # the exit code of every dlrun command on bad configuration or input


class ConfigError(Exception):
    """Bad configuration or input. Each line of the message names a key and what to type instead."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
