#!/usr/bin/env python3
"""layer_p2p.py URL N [--layer gateway|channels_redis] - N messages from one layer instance to
another's channel through Redis (both in this process, on Twisted's asyncio reactor for the
gateway), the sender keeping 50 unacknowledged (the receiver acknowledges every 10th), as
layer_bench.py's p2p_pipe_xproc does across two processes. Prints messages/s and CPU per message;
layer_instructions.sh runs it under callgrind to count instructions per message. The environment
variable SEND_WINDOW sets the gateway layer's ``send_window`` (default 0).
"""
import asyncio
import os
import sys
import time


async def scenario(a, b, n):
    ch = await b.new_channel()
    back = await a.new_channel()
    await a.send(ch, {"type": "warm"})
    await b.receive(ch)
    sem = asyncio.Semaphore(50)

    async def producer():
        for _ in range(n):
            await sem.acquire()
            await a.send(ch, {"type": "bench.message", "text": "x" * 32, "t": time.perf_counter()})

    async def consumer():
        for i in range(n):
            await b.receive(ch)
            if (i + 1) % 10 == 0:
                await b.send(back, {"type": "bench.ack", "n": i + 1})

    async def acks():
        got = 0
        while got < n:
            m = await a.receive(back)
            for _ in range(m["n"] - got):
                sem.release()
            got = m["n"]

    t0, c0 = time.perf_counter(), time.process_time()
    await asyncio.gather(producer(), consumer(), acks())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"RESULT n={n} rate={n / wall:.0f} cpu_us_per_message={cpu / n * 1e6:.1f}", flush=True)


def main():
    url, n = sys.argv[1], int(sys.argv[2])
    kind = sys.argv[4] if len(sys.argv) > 4 and sys.argv[3] == "--layer" else "gateway"
    if kind == "channels_redis":
        from channels_redis.core import RedisChannelLayer

        async def run():
            a, b = RedisChannelLayer(hosts=[url]), RedisChannelLayer(hosts=[url])
            await scenario(a, b, n)
            await a.close_pools()
            await b.close_pools()

        asyncio.run(run())
        return
    from gateway.reactor import install_reactor

    reactor = install_reactor("asyncio")
    from twisted.internet import defer

    from gateway.layers.redis import RedisChannelLayer

    async def run():
        window = int(os.environ.get("SEND_WINDOW", "0"))
        a = RedisChannelLayer(hosts=[url], send_window=window)
        b = RedisChannelLayer(hosts=[url], send_window=window)
        try:
            await scenario(a, b, n)
        finally:
            await a.close()
            await b.close()

    def start():
        d = defer.Deferred.fromFuture(asyncio.ensure_future(run()))
        d.addErrback(lambda f: print(f.getTraceback(), file=sys.stderr))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
