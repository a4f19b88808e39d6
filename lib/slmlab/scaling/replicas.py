"""N replicas of llama.cpp's ``llama-server``, started together, each pinned to a few threads with a few slots.

    with Replicas(2, n_threads=1, parallel=2) as replicas:
        replicas.addresses      # ['127.0.0.1:41001', '127.0.0.1:41002'] for the load balancer
        replicas.kill(1)        # SIGKILL its process group: a crash, not a graceful stop
        replicas.restart(1)     # what a Deployment's controller does: a new process on the same port

Horizontal scaling is more replicas of the same server; vertical scaling is more threads (cores) for one. Each
replica also batches: its `parallel` slots decode together (continuous batching), and requests beyond them wait in
its queue. On a machine with C cores, replicas × n_threads ≤ C keeps them from competing for the same cores.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slmlab.errors import SlmLabError
from slmlab.models.resolver import DEFAULT_MODEL, ResolvedModel, resolve
from slmlab.process import HOST, free_port
from slmlab.serve.llama_server import LlamaServer, llama_server


class Replicas:
    """`count` llama-server replicas of one model on 127.0.0.1, as a context manager (always all stopped).

    Each has `n_threads` threads and `parallel` slots of `n_ctx` tokens; `extra_args` go to every command line.
    """

    def __init__(self, count: int, model: ResolvedModel | str = DEFAULT_MODEL, n_threads: int = 1, n_ctx: int = 512,
                 parallel: int = 2, startup_timeout: float = 90, extra_args: Sequence[str] = ()) -> None:
        if not isinstance(count, int) or count < 1:
            raise SlmLabError(f"count={count!r} replicas is not a positive whole number.", "Use e.g. count=2.")
        if not isinstance(n_threads, int) or n_threads < 1:
            raise SlmLabError(f"n_threads={n_threads!r} must be a whole number ≥ 1.", "Use e.g. n_threads=1.")
        self.model = model if isinstance(model, ResolvedModel) else resolve(model)
        self.n_threads, self.parallel = n_threads, parallel
        self.servers: list[LlamaServer] = []
        ports: set[int] = set()
        for _ in range(count):
            port = free_port()
            while port in ports:
                port = free_port()
            ports.add(port)
            # llama-server reads prompts on --threads-batch, which defaults to --threads: both are pinned
            server = llama_server(self.model, parallel=parallel, n_ctx=n_ctx, port=port, threads=n_threads,
                                  startup_timeout=startup_timeout, model_alias=self.model.name, extra_args=extra_args)
            server.name = f"replica-{len(self.servers)}"
            self.servers.append(server)

    def __len__(self) -> int:
        return len(self.servers)

    @property
    def addresses(self) -> list[str]:
        """'127.0.0.1:PORT' of every replica, in order (for nginx's upstream block)."""
        return [f"{HOST}:{s.port}" for s in self.servers]

    @property
    def urls(self) -> list[str]:
        """Every replica's root URL."""
        return [s.url for s in self.servers]

    def running(self) -> list[bool]:
        """Whether each replica's process is alive."""
        return [s.running for s in self.servers]

    def _check_index(self, index: int) -> LlamaServer:
        if not isinstance(index, int) or not 0 <= index < len(self.servers):
            raise SlmLabError(f"There is no replica {index!r}.", f"Use an index from 0 to {len(self.servers) - 1}.")
        return self.servers[index]

    def start(self) -> Replicas:
        """Start every replica at once and wait until each answers; on any failure stop them all."""
        try:
            with ThreadPoolExecutor(max_workers=len(self.servers)) as pool:
                for future in [pool.submit(s.start) for s in self.servers]:
                    future.result()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every replica (their whole process groups)."""
        for server in self.servers:
            server.stop()

    def kill(self, index: int) -> float:
        """Crash replica `index` with SIGKILL (no graceful shutdown, in-flight requests cut off); returns the time."""
        server = self._check_index(index)
        pid, proc = server.pid, server.proc
        if not server.running or pid is None or proc is None:
            raise SlmLabError(f"Replica {index} is not running.", "Start it (restart(index)) before killing it.")
        when = time.perf_counter()
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
        return when

    def restart(self, index: int) -> LlamaServer:
        """Start replica `index` again on its port (stopping whatever is left of it first)."""
        server = self._check_index(index)
        server.stop()
        return server.start()

    def __enter__(self) -> Replicas:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
