import os, sys, time, subprocess, signal
sys.path.insert(0, "/work/main/benches")
import bench_funcs as bf  # noqa
from distributed import Client
port = int(sys.argv[1]); n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
c = Client(f"tcp://127.0.0.1:{port}", timeout=30)
c.wait_for_workers(4, timeout=60)
futs = c.map(bf.inc, range(100, 500)); c.gather(futs); del futs
t0 = time.time()
if os.environ.get("PERF_PID"):
    pass
futs = c.map(bf.inc, range(n)); tot = c.submit(bf.sum_list, futs); r = tot.result(timeout=300)
print("wall", round(time.time() - t0, 2), r == sum(x + 1 for x in range(n)))
c.close()
