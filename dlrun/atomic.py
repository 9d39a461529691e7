"""Files written atomically: a reader (a resumed run, dlrun-summary on a running sweep) never sees half a file."""

import os
from pathlib import Path

from dlrun import pause


def write(path: Path, contents: bytes | str) -> None:
    """contents (a str as UTF-8) to a temporary file beside path, flushed to disk, then renamed to path; its folder is
    made first. A write that fails (a full disk) removes the temporary file, leaves path as it was and raises."""
    data = contents.encode() if isinstance(contents, str) else contents
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: two writers never share one
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        pause.point(f"write:{path.name}")  # a test's signal lands mid-write (dlrun.pause)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
