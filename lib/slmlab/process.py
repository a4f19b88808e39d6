"""Start a server as a child process on 127.0.0.1, wait until it answers, and always stop it (its whole group).

``ServerProcess`` is the one way slmlab starts servers (llama-cpp-python's, vLLM, our own app)::

    with ServerProcess([sys.executable, "-m", "http.server", "{port}", "--bind", "127.0.0.1"],
                       ready_url="/", name="files") as server:
        httpx.get(server.url)

``{port}`` in the command, the readiness URL and the environment's values is replaced by the port (a free
one is picked when none is given). The server runs in its own process group (a new session), so stopping it
also stops whatever it started; its output goes to a log file (``log_path``, ``log_tail()``).

``run_worker`` is the one way slmlab runs a job in a fresh Python process (its own memory, its own peak RSS)::

    row = run_worker("slmlab.measure.bench", ["model.gguf", "--repeats", "3"], timeout=300, what="Benchmarking")

runs ``python -m slmlab.measure.bench --worker model.gguf --repeats 3``, whose ``__main__`` calls
``worker_main(main)``: the dict ``main`` returns comes back as the last JSON line of its stdout, and a
SlmLabError it raises is raised again here with its problem and hint intact.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from slmlab.errors import SlmLabError, UpstreamError

HOST = "127.0.0.1"
LOG_DIR_ENV = "SLMLAB_LOG_DIR"  # where server logs go (default: a slmlab-logs folder in the temp dir)
_RUNNING: set[ServerProcess] = set()  # started and not yet stopped: stopped at interpreter exit at the latest
WORKER_FLAG = "--worker"  # run_worker starts `python -m MODULE --worker ARGS...`
WORKER_ERROR_KEY = "slmlab_error"  # the JSON line a worker prints for a SlmLabError: {"slmlab_error": {...}}
WORKER_ERROR_EXIT = 2  # and the exit status it ends with then


def free_port(host: str = HOST) -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_in_use(port: int, host: str = HOST) -> bool:
    """True when something accepts connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def group_members(pgid: int) -> list[int]:
    """Process ids still running in process group `pgid` (zombies waiting to be reaped do not count)."""
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):  # no process, or only someone else's: ours are gone
        return []
    import psutil

    alive = []
    for proc in psutil.process_iter(["status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return alive


class ServerProcess:
    """A server command run on 127.0.0.1 as a context manager: started, polled until ready, always stopped.

    `cmd` is the command ("{port}" is filled in); `port` None picks a free one; `ready_url` (a path or a full
    URL) must answer 200 within `startup_timeout` s, asked with `headers`; `env` entries are added to this
    process's environment (None removes a variable); `stop_timeout` is the grace between SIGTERM and SIGKILL.
    """

    def __init__(self, cmd: Sequence[str], port: int | None = None, ready_url: str = "/", name: str = "server",
                 env: Mapping[str, str | None] | None = None, startup_timeout: float = 60,
                 headers: Mapping[str, str] | None = None, stop_timeout: float = 10,
                 log_path: str | os.PathLike | None = None, cwd: str | os.PathLike | None = None) -> None:
        if not cmd or not all(isinstance(part, str | os.PathLike) for part in cmd):
            raise SlmLabError(f"The command for {name} must be a non-empty list of strings, not {cmd!r}.",
                              "Pass it like [sys.executable, '-m', 'llama_cpp.server', '--port', '{port}'].")
        if port is not None and not (isinstance(port, int) and 0 < port < 65536):
            raise SlmLabError(f"port={port!r} is not a TCP port.", "Use a number in 1..65535, or None for a free one.")
        self.name = name
        self._cmd, self._ready, self._env = [os.fspath(c) for c in cmd], ready_url, dict(env or {})
        self._port = port
        self.startup_timeout, self.stop_timeout = startup_timeout, stop_timeout
        self.headers = dict(headers or {})
        self._log_path = Path(log_path) if log_path else None
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None  # seconds from start until ready (the readiness URL's first 200)

    # ------------------------------------------------------------------ what it is

    @property
    def port(self) -> int:
        """The port it listens on (picked when the server starts if none was given)."""
        if self._port is None:
            self._port = free_port()
        return self._port

    @property
    def url(self) -> str:
        """The server's root URL, e.g. http://127.0.0.1:8000."""
        return f"http://{HOST}:{self.port}"

    @property
    def ready_url(self) -> str:
        """The URL polled until it answers 200 (a path is taken relative to `url`)."""
        ready = self._ready.replace("{port}", str(self.port))
        return ready if "://" in ready else f"{self.url}/{ready.lstrip('/')}"

    @property
    def cmd(self) -> list[str]:
        """The command as it is run, with {port} filled in."""
        return [part.replace("{port}", str(self.port)) for part in self._cmd]

    @property
    def log_path(self) -> Path:
        """The file that receives the server's stdout and stderr (kept after it stops)."""
        if self._log_path is None:
            folder = Path(os.environ.get(LOG_DIR_ENV) or Path(tempfile.gettempdir()) / "slmlab-logs")
            folder.mkdir(parents=True, exist_ok=True)
            safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in self.name)
            fd, path = tempfile.mkstemp(prefix=f"{safe}-{self.port}-", suffix=".log", dir=folder)
            os.close(fd)
            self._log_path = Path(path)
        return self._log_path

    @property
    def pid(self) -> int | None:
        """The server's process id (also its process group id), None before start."""
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        """The exit status once it has stopped (negative: killed by that signal), else None."""
        return self.proc.poll() if self.proc else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        if self._log_path is None or not self._log_path.exists():
            return ""
        with open(self._log_path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 200 * lines - 4096))
            text = fh.read().decode("utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        state = "running" if self.running else ("not started" if self.proc is None else f"exited {self.returncode}")
        return f"<ServerProcess {self.name!r} {self.url if self._port else ''} {state}>".replace("  ", " ")

    # ------------------------------------------------------------------ start and stop

    def start(self) -> ServerProcess:
        """Start the command and wait until the readiness URL answers 200; stop it on any failure."""
        if self.running:
            return self
        if self._port is not None and port_in_use(self._port):
            raise SlmLabError(f"Cannot start {self.name}: port {self._port} on {HOST} is already in use.",
                              "Stop whatever listens there, or pass port=None to get a free port.")
        env = child_env(self._env, self.port)
        begin = time.perf_counter()
        with open(self.log_path, "ab") as log:
            try:
                self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                             env=env, cwd=self.cwd, start_new_session=True,
                                             preexec_fn=_parent_death_signal())
            except OSError as exc:
                raise SlmLabError(f"Cannot start {self.name}: {exc.strerror or exc} ({self.cmd[0]}).",
                                  "Check that the program is installed and the command is right.") from None
        _RUNNING.add(self)
        _stop_all_on_sigterm()
        try:
            self._wait_ready(begin)
        except BaseException:  # includes KeyboardInterrupt while waiting: never leave the server behind
            self.stop()
            raise
        self.startup_s = time.perf_counter() - begin
        return self

    def _wait_ready(self, begin: float) -> None:
        import httpx

        deadline, last = begin + self.startup_timeout, "no answer yet"
        proc = self.proc
        assert proc is not None, "start() sets self.proc before waiting"
        with httpx.Client(trust_env=False, timeout=2.0, headers=self.headers) as client:  # no proxy for 127.0.0.1
            while True:
                code = proc.poll()
                if code is not None:
                    raise SlmLabError(f"{self.name} exited during startup with exit code {code}. Last log lines:\n"
                                      f"{self.log_tail()}", f"Read the log above (full log: {self.log_path}).")
                try:
                    answer = client.get(self.ready_url)
                    if answer.status_code == 200:
                        return
                    last = f"HTTP {answer.status_code}"
                except httpx.HTTPError as exc:
                    last = type(exc).__name__
                if time.perf_counter() > deadline:
                    raise SlmLabError(
                        f"{self.name} did not become ready: {self.ready_url} did not answer 200 within "
                        f"{self.startup_timeout:g} s (last: {last}); it was stopped. "
                        f"Last log lines:\n{self.log_tail()}",
                        f"Look at its log ({self.log_path}, or server.log_tail(50)); if it is only slow, "
                        f"pass a larger startup_timeout.")
                time.sleep(0.1)

    def stop(self) -> int | None:
        """Stop the whole process group: SIGTERM, then SIGKILL after `stop_timeout` s. Returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        _RUNNING.discard(self)
        if os.name != "posix":  # pragma: no cover - Windows: no process groups through start_new_session
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
            return proc.wait()
        pgid = proc.pid  # start_new_session=True: the server leads its own group
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        try:
            while time.monotonic() < deadline:
                proc.poll()  # reap the leader so it does not count as alive
                if proc.returncode is not None and not group_members(pgid):
                    break
                time.sleep(0.05)
            else:
                _signal_group(pgid, signal.SIGKILL)
        except BaseException:  # a second Ctrl-C while waiting: kill at once rather than leave it running
            _signal_group(pgid, signal.SIGKILL)
            proc.wait()
            raise
        try:
            return proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL cannot be ignored
            return None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def child_env(env: Mapping[str, Any] | None = None, port: int | None = None) -> dict[str, str]:
    """This process's environment, unbuffered Python output, plus `env` (None removes a variable; "{port}" filled)."""
    merged = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for key, value in (env or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            text = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
            merged[key] = text.replace("{port}", str(port)) if port is not None else text
    return merged


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop()


def _parent_death_signal() -> Any:
    """On Linux, a function for the child that asks the kernel to SIGTERM it when this process dies, even by SIGKILL.

    A kernel killed by a timeout runs no cleanup at all; without this its servers (vLLM: 3.8 GB) would run on.
    The kernel sends it when the *thread* that started the child ends, so only servers started from the main
    thread (notebook cells, scripts) get it; the server's own SIGTERM handling then stops its children.
    """
    import sys
    import threading

    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, sigterm, 0, 0, 0)

    return set_death_signal


_previous_sigterm: Any = None  # the handler ours replaced (it is called after the servers are stopped)


def _stop_all_on_sigterm() -> None:
    """Stop the servers when this process gets SIGTERM (atexit does not run then), then do what it did before.

    Servers run in their own session, so without this a kernel stopped with SIGTERM (a timeout, `kill`) would
    leave them running. Installed once, from the main thread only; a process that ignores SIGTERM keeps doing so.
    """
    global _previous_sigterm
    if os.name != "posix" or _previous_sigterm is not None:
        return
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous == signal.SIG_IGN or previous is None:  # ignored on purpose, or set from C: leave it alone
        return
    _previous_sigterm = previous
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    _stop_all()
    previous = _previous_sigterm
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the default: die of SIGTERM, as if we had not been here
    os.kill(os.getpid(), signal.SIGTERM)


# ----------------------------------------------------------------------------- one job in a fresh Python process


def run_worker(module: str, args: Sequence[Any] = (), *, timeout: float | None = None,
               env: Mapping[str, Any] | None = None, what: str | None = None, hint: str = "",
               echo: bool = False, log_path: str | os.PathLike | None = None) -> dict[str, Any]:
    """Run ``python -m <module> --worker <args>`` and return the JSON object it printed last on its stdout.

    The child's SlmLabError (see :func:`worker_main`) is raised here, problem and hint intact. A timeout, a crash
    or an exit without a result raises a SlmLabError saying what ran (`what`, e.g. "Benchmarking smollm2"), how it
    ended (exit code or signal) and the last lines of its stderr; `hint` leads its "What to do". `env` adds
    variables (None removes one). `echo` prints the child's output here as it comes (its progress); `log_path`
    keeps all of it in a file. The child runs in its own process group, all of it killed on a timeout or Ctrl-C.
    """
    command = [sys.executable, "-m", module, WORKER_FLAG,
               *(os.fspath(a) if isinstance(a, os.PathLike) else str(a) for a in args)]
    what = what or f"python -m {module}"
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, errors="replace", env=child_env(env), start_new_session=True,
                            preexec_fn=_parent_death_signal())
    lines: list[tuple[str, str]] = []  # (stream, line) in the order they arrived
    try:
        code = _read_worker(proc, lines, timeout, echo)
    except subprocess.TimeoutExpired:
        raise SlmLabError(f"{what} took longer than {timeout:g} s; it was stopped.",
                          hint or "Give it less to do, or pass a larger timeout=.") from None
    finally:
        if proc.poll() is None:  # timed out or interrupted: stop it and whatever it started
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        if log_path is not None:
            Path(log_path).write_text("".join(line for _, line in lines), encoding="utf-8")
    out = [line for stream, line in lines if stream == "stdout"]
    result = _last_json_object(out)
    if result is not None and WORKER_ERROR_KEY in result:  # the child's SlmLabError: the same one here
        reported = result[WORKER_ERROR_KEY]
        kind = UpstreamError if reported.get("kind") == "UpstreamError" else SlmLabError
        raise kind(reported.get("problem", "?"), reported.get("hint", ""))
    if code != 0 or result is None:
        err = [line for stream, line in lines if stream == "stderr" and line.strip()]
        tail = "".join((err or out)[-12:]).rstrip() or "(no output)"
        raise SlmLabError(f"{what} failed ({_exit_status(code, result is None)}). Its last output lines:\n{tail}",
                          f"{hint} Run it by hand to see everything: {shlex.join(command)}".lstrip())
    return result


def worker_main(main: Callable[[list[str]], Mapping[str, Any]]) -> NoReturn:
    """The child's side of :func:`run_worker`, called under ``if __name__ == "__main__"``.

    ``main(sys.argv[1:])`` (the arguments start with ``--worker``) returns a dict, printed as one JSON line; a
    SlmLabError it raises is printed as ``{"slmlab_error": {"problem": ..., "hint": ...}}`` (exit status 2).
    """
    try:
        result = dict(main(sys.argv[1:]))
    except SlmLabError as exc:
        error = {"problem": exc.problem, "hint": exc.hint, "kind": type(exc).__name__}
        print(json.dumps({WORKER_ERROR_KEY: error}), flush=True)
        sys.exit(WORKER_ERROR_EXIT)
    print(json.dumps(result), flush=True)
    sys.exit(0)


def _read_worker(proc: subprocess.Popen, lines: list[tuple[str, str]], timeout: float | None, echo: bool) -> int:
    """Collect the child's stdout and stderr lines until it ends (echoed here when asked); its exit status."""
    arrived: queue.Queue[tuple[str, str | None]] = queue.Queue()

    def pump(stream: Any, name: str) -> None:
        for line in stream:
            arrived.put((name, line))
        arrived.put((name, None))

    for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
        threading.Thread(target=pump, args=(stream, name), daemon=True, name=f"worker-{name}").start()
    deadline = None if timeout is None else time.monotonic() + timeout
    open_streams = 2
    while open_streams:
        try:
            name, line = arrived.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise subprocess.TimeoutExpired(proc.args, timeout or 0) from None
        if line is None:
            open_streams -= 1
            continue
        lines.append((name, line))
        if echo and line.strip() and not line.startswith("{"):  # the result line stays out of the echo
            print(line.rstrip("\n"), flush=True)
    return proc.wait(None if deadline is None else max(1.0, deadline - time.monotonic()))  # its output is done


def _last_json_object(lines: Sequence[str]) -> dict[str, Any] | None:
    """The last line that is a JSON object, parsed; None when there is none."""
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return None


def _exit_status(code: int, no_result: bool) -> str:
    """How a child ended, in words: "exit code 1", "killed by SIGKILL, perhaps ...", "exit code 0 without ..."."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        said = f"killed by {name}" + (", perhaps for lack of memory" if -code == signal.SIGKILL else "")
    else:
        said = f"exit code {code}"
    return said + (" without printing its JSON result" if no_result and code == 0 else "")
