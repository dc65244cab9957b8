"""``python -m bench.socket_clients PORT N``: N raw TCP clients of a SocketServer, in a process of their own.

Each sends its hello, then reads and discards until the server closes it;
at the end one JSON line says how many bytes each client received, and
the CPU time the process used. Raw
sockets, one selector and the lowest CPU priority keep the readers out of
the training process's way, as remote clients would be: the server's
fan-out is what is measured.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import struct
import sys
import time

import msgspec


def main(port: int, count: int) -> None:
    os.nice(19)  # stand-ins for remote readers: the training process comes first for the CPUs
    hello = msgspec.msgpack.encode({"kind": "hello", "since": None})
    frame = struct.pack(">I", len(hello)) + hello
    selector = selectors.DefaultSelector()
    received: dict[int, int] = {}
    for i in range(count):
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(frame)
        client.setblocking(False)
        selector.register(client, selectors.EVENT_READ, i)
        received[i] = 0
    print("connected", flush=True)
    while selector.get_map():
        for key, _ in selector.select():
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            try:
                data = sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                selector.unregister(sock)
                sock.close()
            else:
                received[key.data] += len(data)
    print(json.dumps({"bytes": sorted(received.values()), "cpu_s": time.process_time()}), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
