#!/bin/bash
# Record of the twentieth session's real-worker profile (paths as run then, under /tmp/s20):
# scheduler + 4 `dask worker --nthreads 1` + a 20k-task client.map, optional `perf record` on the scheduler.
# run_e2e.sh BIN PORT N [perf-args...]: scheduler + 4 workers + 20k map; optional perf on the scheduler
BIN=$1; PORT=$2; N=$3; shift 3
cd /tmp/s20
PY=/work/main/.venv/bin/python
export DASK_SCHEDULER_PYTHON=$PY PYTHONPATH=/work/main/benches
$BIN --host 127.0.0.1 --port $PORT --no-dashboard > sched-$PORT.log 2>&1 &
SP=$!
sleep 1.5
for i in 1 2 3 4; do PYTHONPATH=/work/main/benches $PY -m distributed.cli.dask_worker tcp://127.0.0.1:$PORT --nthreads 1 --no-nanny --memory-limit 0 --host 127.0.0.1 > w$i-$PORT.log 2>&1 & done
sleep 4
if [ $# -gt 0 ]; then perf record -p $SP "$@" & PP=$!; sleep 0.5; fi
T0=$(awk '{print $14+$15}' /proc/$SP/stat)
PYTHONPATH=/work/main/benches $PY e2emap.py $PORT $N
T1=$(awk '{print $14+$15}' /proc/$SP/stat)
echo "sched self cpu ticks: $((T1-T0))  per task us: $(( (T1-T0)*10000000/N ))"
[ -n "$PP" ] && kill -INT $PP && wait $PP
pkill -f "dask_worker tcp://127.0.0.1:$PORT"; kill $SP; wait 2>/dev/null
