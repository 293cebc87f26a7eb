# Twentieth session: peak RSS and PSS of the scheduler + its helpers while it materializes the
# e2e_array_sum graph (no workers; the split_every variant replaced the graph line). Output in
# helper-pss.txt.
import subprocess, sys, time, threading, os
import psutil
PY = "/work/main/.venv/bin/python"
env = dict(os.environ, DASK_SCHEDULER_PYTHON=PY)
sched = subprocess.Popen(["/work/main/target/release/dask-scheduler", "--host", "127.0.0.1", "--port", "18795", "--no-dashboard"],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(5)
p = psutil.Process(sched.pid)
peak = {"rss": 0, "pss": 0, "n": 0}
stop = False
def sample():
    while not stop:
        procs = [p] + p.children(recursive=True)
        rss = pss = 0
        for q in procs:
            try:
                m = q.memory_full_info()
                rss += m.rss; pss += m.pss
            except psutil.Error:
                pass
        if rss > peak["rss"]:
            peak.update(rss=rss, pss_at_rss_peak=pss, n=len(procs))
        peak["pss"] = max(peak["pss"], pss)
        time.sleep(0.05)
t = threading.Thread(target=sample); t.start()
from distributed import Client
import dask.array as da
c = Client("tcp://127.0.0.1:18795")
x = da.random.default_rng(42).random((10000, 10000), chunks=100).sum()
f = c.compute(x)
time.sleep(25)
stop = True; t.join()
print({k: (round(v / 2**20) if k != "n" else v) for k, v in peak.items()})
c.close(); sched.terminate(); sched.wait()
