#!/usr/bin/env python3
"""Opens N keep-alive HTTP/1.1 connections, sends one request on each, reads each response,
prints "open ANSWERED" once all are in place, holds them for SECS seconds, then exits.

Usage: hold.py HOST PORT N SECS   (used by idle.sh)
"""
import asyncio
import sys


async def one(host, port, held, sem):
    async with sem:  # bounded connect concurrency: no SYN flood against the backlog
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET / HTTP/1.1\r\nhost: bench\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    held.append((reader, writer))
    return head.startswith(b"HTTP/1.1 200")


async def main(host, port, n, secs):
    held = []
    sem = asyncio.Semaphore(256)
    results = await asyncio.gather(*(one(host, port, held, sem) for _ in range(n)), return_exceptions=True)
    ok = sum(1 for r in results if r is True)
    print(f"open {ok}", flush=True)
    await asyncio.sleep(secs)
    for _, w in held:
        w.close()


if __name__ == "__main__":
    host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
    asyncio.run(main(host, port, n, secs))
