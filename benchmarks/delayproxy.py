"""A TCP proxy on 127.0.0.1 that adds an object store's first-byte latency to every request.

moto and the GCS emulator answer on loopback in well under a millisecond, which hides what
matters on a real bucket (see DESIGN.md, "Benchmarks against buckets"). Put this proxy between
the client and the server: each new HTTP request (the client speaking again after the server
answered, on a kept-alive connection) waits ``delay`` seconds before it is forwarded, once per
request; bodies then stream at loopback speed. It also counts requests.

    python benchmarks/delayproxy.py --target 127.0.0.1:5000 --port 5001 --delay 0.03

or in-process: ``proxy = DelayProxy(5000, delay=0.03); proxy.start(); ...; proxy.requests``.
Only loopback addresses are accepted as targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading


class DelayProxy:
    """Forward ``127.0.0.1:port`` to ``127.0.0.1:target_port`` with ``delay`` s per request."""

    def __init__(self, target_port: int, delay: float = 0.030, port: int = 0,
                 target_host: str = "127.0.0.1") -> None:
        if not target_host.startswith("127.") and target_host != "localhost":
            raise ValueError("the delay proxy only forwards to loopback addresses")
        self.target = (target_host, target_port)
        self.delay = delay
        self.port = port
        self.requests = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ running
    def start(self) -> DelayProxy:
        """Serve in a background thread; returns when the port is open."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", self.port))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="delay-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the delay proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def close() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # ------------------------------------------------------------------ one connection
    async def _handle(self, client_r: asyncio.StreamReader,
                      client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            return
        state = {"new_request": True}

        async def upstream() -> None:
            while data := await client_r.read(1 << 16):
                if state["new_request"]:
                    state["new_request"] = False
                    self.requests += 1
                    await asyncio.sleep(self.delay)
                server_w.write(data)
                await server_w.drain()
            with contextlib.suppress(OSError):
                server_w.write_eof()

        async def downstream() -> None:
            while data := await server_r.read(1 << 16):
                state["new_request"] = True
                client_w.write(data)
                await client_w.drain()
            with contextlib.suppress(OSError):
                client_w.write_eof()

        try:
            await asyncio.gather(upstream(), downstream())
        except (ConnectionError, OSError):
            pass
        finally:
            for writer in (server_w, client_w):
                with contextlib.suppress(Exception):
                    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", required=True, help="127.0.0.1:PORT of the server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.030)
    args = parser.parse_args()
    host, port = args.target.rsplit(":", 1)
    proxy = DelayProxy(int(port), args.delay, args.port, host).start()
    print(f"forwarding {proxy.endpoint} -> {args.target} (+{args.delay * 1000:.0f} ms/request)")
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


if __name__ == "__main__":
    main()
