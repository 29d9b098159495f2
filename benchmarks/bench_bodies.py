"""Peak memory of the client when a server answers with a huge body.

A server in a separate process on 127.0.0.1 (so its memory is not charged to the client)
answers every GET with ``--size`` MB of JSON-looking bytes, streamed in 1 MiB chunks (chunked
encoding, no ``Content-Length``: the worst case, where the cap must be enforced while reading).
Each measurement runs in a fresh client process and reports that process's peak resident set
size (``ru_maxrss``) beside its size after imports, so the figure is the cost of the answer:

- ``capped``: ``AmplitudeClient`` with its default ``max_body_bytes`` (64 MiB): it raises
  ``ResponseTooLarge`` once the cap is passed;
- ``raw``: plain aiohttp ``read()`` + ``json.loads`` of the same answer (the behaviour before the
  cap, for comparison; the bytes are valid JSON so decoding runs to the end).

    python benchmarks/bench_bodies.py [--size 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
from multiprocessing.connection import Connection

from aiohttp import web
from serving import serve_forever

MIB = 1024 * 1024


def serve(size: int, port_out: Connection) -> None:
    """Stream a ``size``-byte JSON array of numbers for every GET until terminated."""

    async def answer(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        item = b"1234567,"
        chunk = item * (MIB // len(item))
        try:
            await response.write(b'{"data": [')
            written = 10
            while written + len(chunk) < size - 10:
                await response.write(chunk)
                written += len(chunk)
            await response.write(b"0]}")
            await response.write_eof()
        except ConnectionError:
            pass  # the client stopped reading: expected for the capped client
        return response

    serve_forever(answer, port_out)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(kind: str, url: str, out: Connection) -> None:
    """In a fresh process: fetch once, send back (baseline MiB, peak MiB, outcome)."""
    import aiohttp

    from amplitude_async.client import AmplitudeClient
    from amplitude_async.errors import ResponseTooLarge
    from amplitude_async.queries import EventsList
    from amplitude_async.retry import RetryPolicy

    baseline = peak_mib()

    async def capped() -> str:
        policy = RetryPolicy(max_retries=0)
        async with AmplitudeClient("key", "secret", base_url=url, retry_policy=policy) as client:
            try:
                await client.run(EventsList())
            except ResponseTooLarge as exc:
                return f"ResponseTooLarge (limit {exc.limit // MIB} MiB)"
        return "read whole"

    async def raw() -> str:
        async with aiohttp.ClientSession() as session, session.get(url + "/x") as response:
            body = await response.read()
        data = json.loads(body)
        return f"read and decoded {len(body) // MIB} MiB, {len(data['data'])} numbers"

    outcome = asyncio.run(capped() if kind == "capped" else raw())
    out.send((baseline, peak_mib(), outcome))
    out.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=200, help="answer size in MB (MiB)")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    port_in, port_out = context.Pipe(duplex=False)
    server = context.Process(target=serve, args=(args.size * MIB, port_out), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{port_in.recv()}"
        print(f"answer: {args.size} MiB, streamed without Content-Length")
        for kind in ("capped", "raw"):
            result_in, result_out = context.Pipe(duplex=False)
            worker = context.Process(target=measure, args=(kind, url, result_out))
            worker.start()
            baseline, peak, outcome = result_in.recv()
            worker.join()
            print(
                f"{kind:>6}: peak RSS {peak:7.0f} MiB "
                f"({peak - baseline:+.0f} MiB over the {baseline:.0f} MiB after imports): "
                f"{outcome}"
            )
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()
