// Live status page of the Rust dask-scheduler. Plain JS, no dependencies:
// one snapshot from json/status.json, then server-sent events from
// status/events (falls back to polling if EventSource fails).
(function () {
  "use strict";
  var STATES = ["memory", "processing", "queued", "waiting", "no-worker", "erred"];
  var WINDOW = 30; // seconds of task stream shown
  var stream = []; // {prefix, worker, action, start, stop}
  var nextSeq = 0;
  var updates = 0;
  var last = null;

  function $(id) { return document.getElementById(id); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }
  function fmtBytes(n) {
    var units = [["PiB", Math.pow(2, 50)], ["TiB", Math.pow(2, 40)], ["GiB", Math.pow(2, 30)], ["MiB", Math.pow(2, 20)], ["kiB", 1024]];
    for (var i = 0; i < units.length; i++) {
      if (n >= units[i][1] * 0.9) return (n / units[i][1]).toFixed(2) + " " + units[i][0];
    }
    return n + " B";
  }
  function fmtSeconds(s) {
    if (s < 1e-3) return (s * 1e6).toFixed(0) + " us";
    if (s < 1) return (s * 1e3).toFixed(1) + " ms";
    return s.toFixed(2) + " s";
  }
  function color(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
    return "hsl(" + (h % 360) + ",65%,50%)";
  }
  function setNum(id, text, raw) {
    var el = $(id);
    el.textContent = text;
    el.setAttribute("data-value", String(raw));
  }

  function render(s) {
    last = s;
    updates += 1;
    $("updates").textContent = updates;
    $("scheduler-address").textContent = s.scheduler.address;
    setNum("n-workers", s.workers.length, s.workers.length);
    setNum("n-threads", s.total_threads, s.total_threads);
    var held = s.counts.bytes;
    setNum("memory", fmtBytes(held) + " / " + fmtBytes(s.total_memory), s.total_memory);
    $("memory").setAttribute("data-held", String(held));
    var ntasks = s.counts.tasks;
    setNum("n-tasks", ntasks, ntasks);
    setNum("n-processing", s.tasks.processing, s.tasks.processing);
    setNum("n-clients", s.clients, s.clients);
    setNum("loop-busy", fmtSeconds(s.event_loop_busy_seconds), s.event_loop_busy_seconds);

    // progress bars by prefix
    var html = "";
    s.prefixes.forEach(function (p) {
      var total = 0;
      ["released"].concat(STATES).forEach(function (k) { total += p.states[k] || 0; });
      if (!total) return;
      var segs = "";
      STATES.forEach(function (k) {
        var n = p.states[k] || 0;
        if (n) segs += '<div class="seg ' + k + '" style="width:' + (100 * n / total) + '%" title="' + k + ': ' + n + '"></div>';
      });
      html += '<div class="prefix" data-prefix="' + esc(p.name) + '" data-total="' + total + '" data-memory="' + (p.states.memory || 0) + '">' +
        '<div class="name" title="' + esc(p.name) + '">' + esc(p.name) + '</div>' +
        '<div class="bar">' + segs + '</div>' +
        '<div class="count">' + (p.states.memory || 0) + ' / ' + total + '</div></div>';
    });
    $("progress").innerHTML = html || '<p class="muted">No tasks.</p>';

    var st = "";
    ["released", "waiting", "queued", "no-worker", "processing", "memory", "erred", "forgotten"].forEach(function (k) {
      st += '<div class="state" data-state="' + k + '">' + k + ' <b>' + (s.tasks[k] || 0) + '</b></div>';
    });
    $("states").innerHTML = st;

    // workers table
    var rows = "";
    s.workers.forEach(function (w) {
      var frac = w.memory_limit > 0 ? Math.min(1, w.memory / w.memory_limit) : 0;
      var res = w.resources.map(function (r) { return esc(r.name) + " " + r.used + "/" + r.total; }).join(", ");
      var gpu = "";
      if (w.gpu) {
        var sum = function (v) { return Array.isArray(v) ? v.reduce(function (a, b) { return a + b; }, 0) : v; };
        var names = w.gpu["name"] || w.gpu["names"] || "";
        var mem = w.gpu["memory-total"];
        var m = w.gpu_metrics || {};
        gpu = '<span class="gpu">' + esc(Array.isArray(names) ? names.join(", ") : names) +
          (mem ? " (" + fmtBytes(sum(mem)) + ")" : "") +
          "<br>" +
          (m.utilization !== undefined && m.utilization !== null ? "util " + esc(sum(m.utilization)) + "%" : "") +
          (m["memory-used"] ? " &middot; used " + fmtBytes(sum(m["memory-used"])) : "") + "</span>";
      }
      rows += '<tr class="worker" data-address="' + esc(w.address) + '" data-nthreads="' + w.nthreads +
        '" data-memory-limit="' + w.memory_limit + '" data-processing="' + w.processing + '">' +
        "<td>" + esc(w.address) + "</td><td>" + esc(w.name) + '</td><td class="status-' + esc(w.status) + '">' + esc(w.status) +
        '</td><td class="num">' + w.nthreads + '</td><td class="num">' + w.processing + '</td><td class="num">' + w.in_memory +
        '</td><td><span class="mem"><span style="width:' + (100 * frac) + '%"></span></span>' + fmtBytes(w.memory) + " / " + fmtBytes(w.memory_limit) +
        '</td><td class="num">' + fmtSeconds(w.occupancy) + "</td><td>" + (res || "&ndash;") + '</td><td class="gpu-cell">' + (gpu || "&ndash;") + "</td></tr>";
    });
    document.querySelector("#workers tbody").innerHTML = rows;

    // task stream
    s.task_stream.forEach(function (e) { stream.push(e); });
    nextSeq = s.next_seq;
    var cutoff = s.time - WINDOW * 4;
    while (stream.length && (stream.length > 20000 || stream[0].stop < cutoff)) stream.shift();
    drawStream(s);
  }

  function drawStream(s) {
    var canvas = $("task-stream");
    var width = canvas.clientWidth || 1200;
    canvas.width = width;
    var ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    var end = s.time, start = end - WINDOW;
    // one lane per worker thread: entries are packed greedily into lanes
    var lanesOf = {}, first = {}, nlanes = 0;
    s.workers.slice().sort(function (a, b) { return a.address < b.address ? -1 : 1; })
      .forEach(function (w) {
        first[w.address] = nlanes;
        lanesOf[w.address] = [];
        for (var i = 0; i < Math.max(1, w.nthreads); i++) lanesOf[w.address].push(-Infinity);
        nlanes += Math.max(1, w.nthreads);
      });
    var axis = 14;
    var laneH = Math.max(3, Math.min(24, (canvas.height - axis - 2) / Math.max(1, nlanes)));
    var visible = stream.filter(function (e) { return e.stop >= start && lanesOf[e.worker]; })
      .sort(function (a, b) { return a.start - b.start; });
    var seen = {};
    visible.forEach(function (e) {
      var lanes = lanesOf[e.worker];
      // the first free lane, else (clock skew, transfers) the one freed first
      var lane = 0;
      for (var i = 0; i < lanes.length; i++) {
        if (lanes[i] <= e.start) { lane = i; break; }
        if (lanes[i] < lanes[lane]) lane = i;
      }
      lanes[lane] = Math.max(lanes[lane], e.stop);
      var row = first[e.worker] + lane;
      var x0 = width * (Math.max(e.start, start) - start) / WINDOW;
      var x1 = width * (e.stop - start) / WINDOW;
      ctx.fillStyle = e.action === "compute" ? color(e.prefix) : "rgba(220,53,69,.5)";
      ctx.fillRect(x0, 1 + row * laneH, Math.max(1, x1 - x0), Math.max(1, laneH - 1));
      if (e.action === "compute") seen[e.prefix] = true;
    });
    // worker separators and time axis
    ctx.fillStyle = "#e3e6eb";
    Object.keys(first).forEach(function (a) { if (first[a]) ctx.fillRect(0, first[a] * laneH, width, 1); });
    ctx.font = "11px system-ui, sans-serif";
    ctx.fillStyle = "#6b7280";
    for (var t = 0; t <= WINDOW; t += 5) {
      var x = width * (t / WINDOW);
      ctx.fillRect(x, canvas.height - axis, 1, 4);
      ctx.fillText("-" + (WINDOW - t) + "s", Math.min(x + 2, width - 28), canvas.height - 2);
    }
    var legend = "";
    Object.keys(seen).sort().forEach(function (p) {
      legend += '<span class="sw" style="background:' + color(p) + '"></span>' + esc(p);
    });
    $("stream-legend").innerHTML = legend;
  }

  function live(on, text) {
    $("live-dot").className = on ? "dot on" : "dot";
    $("live-status").textContent = text;
  }

  function poll() {
    fetch("json/status.json?since=" + nextSeq).then(function (r) { return r.json(); })
      .then(function (s) { render(s); live(true, "live (polling)"); })
      .catch(function () { live(false, "disconnected"); })
      .then(function () { setTimeout(poll, 1000); });
  }

  function connect() {
    if (!window.EventSource) { poll(); return; }
    var es = new EventSource("status/events?since=" + nextSeq);
    var failures = 0;
    es.addEventListener("status", function (ev) {
      failures = 0;
      render(JSON.parse(ev.data));
      live(true, "live");
    });
    es.onerror = function () {
      failures += 1;
      live(false, "reconnecting");
      if (failures > 5) { es.close(); poll(); }
    };
  }

  fetch("json/status.json").then(function (r) { return r.json(); })
    .then(function (s) { render(s); live(true, "live"); })
    .catch(function () { live(false, "disconnected"); })
    .then(connect);
})();
