"""The SQLite writer as a process of its own: ``python -m gateway.store.writer PATH``.

`SqliteStore(writer="process")` starts it and sends it batches of operations over its
standard input; it runs each batch in one transaction (`sqlite.run_ops`, exactly as the writer
thread does) and answers with the results on its standard output, only after the commit. The
point is the second core: the writer's Python work no longer shares the event loop's
interpreter lock.

Frames both ways: a 4-byte big-endian length, then a pickle (operations are module-level
functions of `gateway.store.sqlite` and their arguments; results are values or exceptions).
The parent is the only peer, over a pipe it created: nothing else can write these pickles.
An empty frame asks the writer to stop.
"""

from __future__ import annotations

import pickle
import struct
import sys
from typing import BinaryIO

from gateway.store.sqlite import connect, run_ops

__all__ = ["main", "read_frame", "write_frame"]

_LENGTH = struct.Struct(">I")


def read_frame(stream: BinaryIO) -> bytes | None:
    """One frame's payload; None at the end of the stream."""
    head = stream.read(4)
    if len(head) < 4:
        return None
    (length,) = _LENGTH.unpack(head)
    payload = stream.read(length)
    return payload if len(payload) == length else None


def write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def main(path: str) -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    try:
        conn = connect(path)
    except Exception as exc:
        write_frame(stdout, pickle.dumps(exc))
        return 1
    write_frame(stdout, pickle.dumps(None))  # ready
    while (payload := read_frame(stdin)) is not None and payload:
        ops = pickle.loads(payload)  # from our own parent, over the pipe it made
        results = run_ops(conn, ops)
        try:
            out = pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # a result that cannot be pickled: say so for each
            error = RuntimeError(f"store result not transferable: {exc}")
            out = pickle.dumps([(None, error)] * len(ops))
        write_frame(stdout, out)
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
