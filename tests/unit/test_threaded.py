"""serving_in_thread: a real asyncio server driven from synchronous code."""

from __future__ import annotations

import asyncio
import socket

import pytest

from dealerpulse.threaded import serving_in_thread


class EchoServer:
    """A TCP echo server on 127.0.0.1:0 that records whether it was stopped."""

    def __init__(self) -> None:
        self.stopped = False
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        self._server = await asyncio.start_server(echo, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        self.stopped = True


class BrokenServer:
    async def start(self) -> int:
        raise OSError("address already in use")

    async def stop(self) -> None:
        raise AssertionError("a server that never started is not stopped")


def test_the_server_answers_while_the_block_runs_and_is_stopped_after() -> None:
    server = EchoServer()
    with serving_in_thread(lambda: server, name="echo") as port:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            conn.sendall(b"ping\n")
            assert conn.makefile("rb").readline() == b"ping\n"
        assert not server.stopped
    assert server.stopped
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_a_failed_start_is_raised_in_the_caller_naming_the_server() -> None:
    with (
        pytest.raises(RuntimeError, match="echo did not start: address already in use"),
        serving_in_thread(BrokenServer, timeout_s=5, name="echo"),
    ):
        pass
