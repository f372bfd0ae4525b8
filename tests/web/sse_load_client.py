"""SSE load clients for ``test_load.py``, run in their own process.

In their own process the clients do not compete with the server and the
publisher for the GIL, as browsers would not. Usage::

    python -m tests.web.sse_load_client PORT N

It opens N connections to ``/events`` on 127.0.0.1:PORT, checks as it reads
that each client's ids go up one by one, counts ``dropped``/``gap``/
``reset`` notices, and talks on stdin/stdout, one line each way:

* prints ``connected`` once every client has its response headers;
* on ``until SEQ`` waits (at most 60 s) until every client has seen SEQ,
  then prints a JSON report ``{"last": [...], "count": [...],
  "out_of_order": [...], "notices": [...], "errors": [...]}``;
* on ``quit`` (or end of input) closes everything and exits.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time

# A literal prefix lets ``re`` skip ahead fast (the client reads ~500 MB).
ID = re.compile(rb"\nid: (\d+)\n")
NOTICES = (b"\nevent: dropped\n", b"\nevent: gap\n", b"\nevent: reset\n")
REQUEST = b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"


class Clients:
    """The state of every client."""

    def __init__(self, port: int, n: int) -> None:
        self.port = port
        self.n = n
        self.last = [0] * n
        self.count = [0] * n
        self.out_of_order = [0] * n
        self.notices = [0] * n
        self.errors: list[str] = []
        self.connected = 0
        self.all_connected = asyncio.Event()

    async def read(self, i: int) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError as exc:
            self.errors.append(f"client {i}: {exc!r}")
            return
        try:
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                self.errors.append(f"client {i}: {head[:60]!r}")
                return
            self.connected += 1
            if self.connected == self.n:
                self.all_connected.set()
            buf = b"\n"
            while True:
                chunk = await reader.read(1 << 18)
                if not chunk:
                    return
                buf += chunk
                cut = buf.rfind(b"\n\n")
                if cut < 0:
                    continue
                # Keep the last newline with the rest: every message starts "\nid: ".
                done, buf = buf[: cut + 1], buf[cut + 1 :]
                last = self.last[i]
                seqs = [int(s) for s in ID.findall(done)]
                for seq in seqs:
                    if seq != last + 1:
                        self.out_of_order[i] += 1
                    last = seq
                self.count[i] += len(seqs)
                self.last[i] = last
                self.notices[i] += sum(done.count(n) for n in NOTICES)
        except (OSError, asyncio.IncompleteReadError) as exc:
            self.errors.append(f"client {i}: {exc!r}")
        finally:
            writer.close()

    def report(self) -> str:
        return json.dumps(
            {
                "last": self.last,
                "count": self.count,
                "out_of_order": self.out_of_order,
                "notices": self.notices,
                "errors": self.errors,
            }
        )


async def main(port: int, n: int) -> None:
    clients = Clients(port, n)
    tasks = [asyncio.create_task(clients.read(i)) for i in range(n)]
    loop = asyncio.get_running_loop()
    await asyncio.wait_for(clients.all_connected.wait(), 30)
    print("connected", flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "until":
            target = int(line[1])
            deadline = time.monotonic() + 60
            while min(clients.last) < target and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            print(clients.report(), flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
