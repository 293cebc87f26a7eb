"""Per-task pickling of Task(f, i) where f comes from a client's __main__
(not importable in this process), as the materializer helper sees it:
distributed's dumps, the helper's pickle_node before this session's change
(HELPER_BEFORE, e.g. `git show d07523c:crates/server/src/materializer/helper.py
> /tmp/helper_before.py`) and after it (the working tree's), alternating,
5 rounds; plus the two failing attempts on their own.

Run: .venv/bin/python benches/results/regress-s19/pickle_micro.py /tmp/helper_before.py"""
import time, pickle, io, os, sys, importlib.util
from dask._task_spec import Task
from distributed.protocol import pickle as dpickle
ns = {}
exec("SCALE = 3\ndef f(x):\n    return x * SCALE\n", ns)
f = ns['f']; f.__module__ = '__main__'; f.__qualname__ = 'f_not_here'
nodes = [Task(("f", i), f, i) for i in range(5000)]
HELPER = os.path.join(os.path.dirname(__file__), "../../../crates/server/src/materializer/helper.py")
def load(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod); mod._import_environment()
    return mod
before, after = load(sys.argv[1], "before"), load(HELPER, "after")
def t(label, fn):
    t0 = time.perf_counter()
    for n in nodes:
        try: fn(n)
        except Exception: pass
    print(f"{label:40s} {(time.perf_counter()-t0)/len(nodes)*1e6:6.1f} us/task")
for r in range(5):
    t("distributed dumps", lambda n: dpickle.dumps(n, protocol=5, buffer_callback=[].append))
    t("helper pickle_node, before", before._node_pickler())  # one per graph, as the helper makes it
    t("helper pickle_node, after", after._node_pickler())
t("plain pickle.dumps, failing", lambda n: pickle.dumps(n, protocol=5, buffer_callback=[].append))
def dp(n):
    b = io.BytesIO(); dpickle._DaskPickler(b, protocol=5, buffer_callback=[].append).dump(n)
t("_DaskPickler, failing", dp)
