"""What reading Home Assistant's audio costs any asyncio server on this machine.

A Home Assistant STT stream is 100 ``audio-chunk`` events per second (10 ms each,
``homeassistant/components/wyoming/stt.py``, Home Assistant 2026.11), each arriving in its
own TCP segment, so a server wakes up 100 times per second per stream whatever it does
with the audio. This measures
the CPU that costs a Python process that does nothing else, as baselines for the
server's own "CPU per second of audio" rows:

- ``asyncio, no parsing``: an ``asyncio.Protocol`` whose ``data_received`` does nothing
  (the event loop's wake-up alone);
- ``wyoming.event.async_read_event``: a plain asyncio server reading the events with the
  ``wyoming`` library's own reader and dropping them (what any Wyoming server pays
  before it touches the audio);
- ``blocking recv thread``: a thread per connection blocked in ``recv`` (no event loop),
  for scale.

Each server runs in its own process; its CPU (user + system) is read from ``/proc``.
Run alone: ``.venv/bin/python benchmarks/cpu_floor.py [--seconds S] [--clients N]``;
``script/bench`` prints the same rows next to the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from pathlib import Path

from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient

_SERVER = r"""
import asyncio, socket, sys
from wyoming.event import async_read_event

kind, port = sys.argv[1], int(sys.argv[2])

class Idle(asyncio.Protocol):
    def data_received(self, data):
        pass

async def read_events(reader, writer):
    while await async_read_event(reader) is not None:
        pass
    writer.close()

async def main():
    loop = asyncio.get_running_loop()
    if kind == "protocol":
        server = await loop.create_server(Idle, "127.0.0.1", port)
    else:
        server = await asyncio.start_server(read_events, "127.0.0.1", port)
    print("ready", flush=True)
    await server.serve_forever()

def drain(conn):
    while conn.recv(65536):
        pass
    conn.close()

if kind == "thread":
    import threading
    listener = socket.create_server(("127.0.0.1", port))
    print("ready", flush=True)
    while True:
        threading.Thread(target=drain, args=(listener.accept()[0],), daemon=True).start()
else:
    asyncio.run(main())
"""

KINDS = {
    "protocol": "asyncio, no parsing",
    "wyoming": "wyoming.event.async_read_event",
    "thread": "blocking recv thread",
}
CHUNK_BYTES = 320  # 10 ms of 16 kHz s16le mono


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far (``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _stream(port: int, seconds: float) -> None:
    """One HA-like stream: ``audio-start``, 10 ms chunks paced in real time, ``audio-stop``."""
    chunk = bytes(CHUNK_BYTES)
    async with AsyncTcpClient("127.0.0.1", port) as client:
        await client.write_event(AudioStart(rate=16000, width=2, channels=1).event())
        due = time.monotonic()
        for _ in range(int(seconds * 100)):
            await client.write_event(
                AudioChunk(rate=16000, width=2, channels=1, audio=chunk).event()
            )
            due += 0.01
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        await client.write_event(AudioStop().event())


async def floor_ms_per_s(kind: str, seconds: float, clients: int = 1) -> float:
    """CPU milliseconds per second of audio of a ``kind`` server (see :data:`KINDS`) with
    ``clients`` simultaneous streams (the audio of all of them counts)."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _SERVER, kind, str(port), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        await proc.stdout.readline()  # "ready"
        await asyncio.sleep(0.3)
        before = cpu_seconds(proc.pid)
        await asyncio.gather(*(_stream(port, seconds) for _ in range(clients)))
        await asyncio.sleep(0.2)
        return (cpu_seconds(proc.pid) - before) / (seconds * clients) * 1000
    finally:
        proc.terminate()
        await proc.wait()


async def floors(seconds: float = 10.0, clients: int = 1) -> dict[str, float]:
    """``{description: CPU ms per second of audio}`` for every kind of :data:`KINDS`."""
    return {label: await floor_ms_per_s(kind, seconds, clients) for kind, label in KINDS.items()}


async def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per measurement")
    parser.add_argument("--clients", type=int, default=1, help="simultaneous streams")
    args = parser.parse_args()
    for label, value in (await floors(args.seconds, args.clients)).items():
        print(f"floor, {args.clients} x 16 kHz stream, {label}: {value:.1f} ms CPU/s of audio")


if __name__ == "__main__":
    asyncio.run(_main())
