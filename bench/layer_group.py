#!/usr/bin/env python3
"""layer_group.py URL N [MEMBERS] [--layer gateway|memory] - N group_sends to a group of MEMBERS
(default 1 000) channels of this process, each waited for until every member received it, as
layer_bench.py's group_latency does (one receiver task per channel). Prints the median time to
all received and CPU per group_send; run it under callgrind (layer_instructions.sh GROUP=1) to
count instructions per group_send. ``--layer memory`` runs the in-memory layer (URL unused): the
floor of waking MEMBERS receiver tasks.
"""
import asyncio
import statistics
import sys
import time


async def scenario(layer, n, members):
    chans = []
    for _ in range(members):
        ch = await layer.new_channel()
        await layer.group_add("g", ch)
        chans.append(ch)
    st = {"got": 0, "ev": asyncio.Event()}

    async def recv_loop(ch):
        while True:
            m = await layer.receive(ch)
            if m.get("stop"):
                return
            st["got"] += 1
            if st["got"] >= members:
                st["ev"].set()

    tasks = [asyncio.ensure_future(recv_loop(ch)) for ch in chans]

    async def one():
        st["got"] = 0
        st["ev"].clear()
        t0 = time.perf_counter()
        await layer.group_send("g", {"type": "bench.message", "text": "x" * 32})
        await st["ev"].wait()
        return time.perf_counter() - t0

    await one()
    c0 = time.process_time()
    times = [await one() for _ in range(n)]
    cpu = time.process_time() - c0
    await layer.group_send("g", {"type": "bench.message", "stop": True})
    await asyncio.gather(*tasks)
    for ch in chans:
        await layer.group_discard("g", ch)
    print(f"RESULT n={n} members={members} p50_ms={statistics.median(times) * 1e3:.2f} "
          f"cpu_ms_per_send={cpu / n * 1e3:.2f}", flush=True)


def main():
    url, n = sys.argv[1], int(sys.argv[2])
    members = int(sys.argv[3]) if len(sys.argv) > 3 and not sys.argv[3].startswith("-") else 1000
    kind = sys.argv[sys.argv.index("--layer") + 1] if "--layer" in sys.argv else "gateway"
    from gateway.reactor import install_reactor

    reactor = install_reactor("asyncio")
    from twisted.internet import defer

    if kind == "memory":
        from gateway.layers.memory import InMemoryChannelLayer

        layer = InMemoryChannelLayer()
    else:
        from gateway.layers.redis import RedisChannelLayer

        layer = RedisChannelLayer(hosts=[url])

    async def run():
        try:
            await scenario(layer, n, members)
        finally:
            if hasattr(layer, "flush"):
                await layer.flush()
            if hasattr(layer, "close"):
                await layer.close()

    def start():
        d = defer.Deferred.fromFuture(asyncio.ensure_future(run()))
        d.addErrback(lambda f: print(f.getTraceback(), file=sys.stderr))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)


if __name__ == "__main__":
    main()
