"""The embedded Ray instance goes away with its driver, however the driver ends (SIGKILL included).

Ray fate-shares only in part: when its driver is SIGKILLed, its GCS and raylet go at once, but its dashboard and
runtime-env agents linger for minutes retrying the dead GCS. So the driver starts Ray's processes in a process group
of their own (it steps into a new group for the length of ``ray.init`` and back out), and first starts a small
reaper in a session of its own (a Ctrl-C or a hang-up of the terminal does not reach it). The reaper waits on a pipe
from the driver; when the pipe closes (the driver stopped Ray, exited or was killed) it ends that group, and only it.
Ray's workers run in groups of their own, and end with their raylet.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

GRACE_SECONDS = 2.0  # between SIGTERM and SIGKILL
# What a driver that shares the group with Ray's processes (it could not leave its own) says as it releases the
# reaper: ending the group would end the driver.
SPARE = b"spare"


class Reaper:
    """The driver's side: the reaper process and the group of Ray's processes it ends."""

    def __init__(self, process: subprocess.Popen[bytes], group: int):
        self.process = process
        self.group = group

    @classmethod
    def start(cls, group: int) -> Reaper:
        process = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__), str(group)],  # -I: stdlib only, whatever the cwd
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return cls(process, group)

    def release(self, timeout: float = 30.0) -> None:
        """Ray was shut down: end whatever of it is left."""
        assert self.process.stdin is not None
        try:
            if os.getpgrp() == self.group:
                self.process.stdin.write(SPARE)
            self.process.stdin.close()
        except BrokenPipeError:  # someone ended the reaper already
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass  # it carries on alone, and exits once the group has ended


def start_in_own_group(start: Callable[[], Any]) -> Reaper | None:
    """Call ``start`` (which spawns Ray's processes) from a new process group, with a reaper for that group.

    None where there are no process groups (Windows). A session leader cannot leave its group: Ray's processes
    then share it, and the reaper ends them only if the driver dies.
    """
    if not hasattr(os, "setpgid"):
        start()
        return None
    own = os.getpgrp()
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    reaper = Reaper.start(os.getpgrp())
    # Out of the terminal's foreground group for a moment: a write to the terminal must not stop the driver.
    in_main_thread = threading.current_thread() is threading.main_thread()
    ttou = signal.signal(signal.SIGTTOU, signal.SIG_IGN) if in_main_thread else None
    try:
        try:
            start()
        finally:
            try:
                os.setpgid(0, own)
            except OSError:  # that group is gone: the driver stays in Ray's group
                pass
            if ttou is not None:
                signal.signal(signal.SIGTTOU, ttou)
    except BaseException:
        reaper.release()  # Ray started in part, or not at all: end what it started
        raise
    return reaper


def end_group(group: int, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the group, then SIGKILL what is still in it after ``grace`` seconds."""
    try:
        os.killpg(group, signal.SIGTERM)
        deadline = time.time() + grace
        while time.time() < deadline:
            time.sleep(0.1)
            os.killpg(group, 0)
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:  # the group is empty
        pass


def main(group: str) -> None:
    if sys.stdin.buffer.read() != SPARE:  # returns when the driver closes the pipe, or dies
        end_group(int(group))


if __name__ == "__main__":
    main(*sys.argv[1:])
