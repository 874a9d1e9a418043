"""math-verify in a persistent worker process, with a per-call deadline.

math-verify's own timeout uses ``signal.alarm``, which fails outside the main thread, so it runs
here in its no-signal mode inside a worker: a fresh interpreter (POSIX only) that each call waits
on for at most ``timeout`` seconds. A worker that overruns is killed, restarted on the next call,
and the answer counts as wrong. Calls are serialised by a lock, so any thread may verify.
``shutdown_verifier`` stops the worker and runs at interpreter exit.
"""

from __future__ import annotations

import atexit
import importlib
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection

logger = logging.getLogger(__name__)

# The worker is a fresh interpreter started with subprocess, not multiprocessing: multiprocessing's
# spawn and forkserver re-import the parent's __main__ in the child, which re-runs an unguarded
# user script and fails outright under `python -` or a notebook. The child gets the parent's
# sys.path and talks over two pipes with multiprocessing's message framing.

_CHILD_CODE = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[1]); "
    "from {module} import _serve; "
    "_serve(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5]))"
)


def _math_verify_equal(predicted: str, reference: str) -> bool:
    """math-verify's verdict, with its signal-based timeouts switched off (the worker times it)."""
    import math_verify

    gold = math_verify.parse(f"${reference.replace('$', '')}$", parsing_timeout=None)
    pred = math_verify.parse(f"${predicted.replace('$', '')}$", parsing_timeout=None)
    if not gold or not pred:
        return False
    return bool(math_verify.verify(gold, pred, timeout_seconds=None))


def _serve(request_fd: int, reply_fd: int, target: str, preload: Sequence[str]) -> None:
    """Worker loop: answer each ``(predicted, reference)`` request with ``target``'s verdict."""
    requests = Connection(request_fd, writable=False)
    replies = Connection(reply_fd, readable=False)
    # math-verify warns once that its own timeout is off; here that is intended.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    for module in preload:
        importlib.import_module(module)
    function = _resolve(target)
    replies.send("ready")
    while True:
        try:
            request = requests.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if request is None:
            return
        try:
            verdict = bool(function(*request))
        except Exception:
            verdict = False
        replies.send(verdict)


def _resolve(target: str):
    module_name, _, function_name = target.partition(":")
    return getattr(importlib.import_module(module_name), function_name)


class _Verifier:
    """A persistent worker process that runs ``target`` (``"module:function"``) under a deadline.

    The worker starts on the first call; starting (imports included) is bounded by
    ``start_timeout``, not by the per-call deadline. A call that overruns its deadline kills the
    worker and returns False; the next call starts a fresh one. POSIX only (it passes pipe fds).
    """

    def __init__(
        self,
        target: str = f"{__name__}:_math_verify_equal",
        preload: Sequence[str] = ("math_verify",),
        start_timeout: float = 120.0,
    ):
        self.target = target
        self.preload = tuple(preload)
        self.start_timeout = start_timeout
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._requests: Connection | None = None
        self._replies: Connection | None = None

    def __call__(self, predicted: str, reference: str, timeout: float) -> bool:
        with self._lock:
            try:
                self._ensure_started()
            except Exception as error:
                logger.warning("math-verify worker failed to start (%r); answer counted wrong",
                               error)
                self._stop()
                return False
            try:
                self._requests.send((predicted, reference))
                if not self._replies.poll(timeout):
                    logger.warning(
                        "math-verify took over %.1f s on %r vs %r; answer counted wrong, "
                        "worker restarted",
                        timeout, predicted[:100], reference[:100],
                    )
                    self._stop()
                    return False
                return bool(self._replies.recv())
            except (EOFError, OSError) as error:
                logger.warning("math-verify worker died (%r); answer counted wrong", error)
                self._stop()
                return False

    def close(self) -> None:
        """Stop the worker: ask it to exit, and kill it if it does not within a second."""
        with self._lock:
            if self._process is not None:
                try:
                    self._requests.send(None)
                    self._process.wait(timeout=1.0)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            self._stop()

    def _ensure_started(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self._stop()
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        code = _CHILD_CODE.format(module=__name__)
        args = [json.dumps(sys.path), str(request_read), str(reply_write), self.target,
                json.dumps(self.preload)]
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-c", code, *args],
                pass_fds=(request_read, reply_write),
                stdin=subprocess.DEVNULL,
            )
        finally:
            os.close(request_read)
            os.close(reply_write)
        self._requests = Connection(request_write, readable=False)
        self._replies = Connection(reply_read, writable=False)
        if not self._replies.poll(self.start_timeout):
            raise TimeoutError(f"no sign of life within {self.start_timeout:.0f} s")
        if self._replies.recv() != "ready":  # EOFError here: it crashed while importing
            raise RuntimeError("unexpected first message from the worker")

    def _stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait(timeout=5.0)
        for conn in (self._requests, self._replies):
            if conn is not None:
                conn.close()
        self._process, self._requests, self._replies = None, None, None


VERIFIER = _Verifier()


def shutdown_verifier() -> None:
    """Stop the math-verify worker process (a later verification starts a new one)."""
    VERIFIER.close()


atexit.register(shutdown_verifier)
