// tickstream dashboard: a watchlist fed by SSE (default) or WebSocket.
// Ticks only update state; the DOM is touched once per animation frame,
// for the rows that changed, so hundreds of updates a second stay smooth.
'use strict';

const $ = (id) => document.getElementById(id);
const store = {
  get(k, d) { try { const v = localStorage.getItem('tickstream.' + k); return v === null ? d : JSON.parse(v); } catch { return d; } },
  set(k, v) { try { localStorage.setItem('tickstream.' + k, JSON.stringify(v)); } catch { /* private mode */ } },
};
// A node run with --auth-secret needs a token: open the page with
// ?access_token=… and it is passed on (EventSource cannot set headers).
const TOKEN = new URLSearchParams(location.search).get('access_token');
const DEFAULT_SYMBOLS = ['AAPL', 'MSFT', 'NVDA', 'TSLA', 'SPY', 'QQQ', 'EURUSD', 'USDJPY', 'BTC-USD', 'ETH-USD', 'ES', 'GC'];

const state = {
  symbols: store.get('symbols', DEFAULT_SYMBOLS),
  transport: store.get('transport', 'sse'),
  interval: store.get('interval', '250ms'),
  selected: store.get('selected', null),
  barSize: store.get('barSize', 5),
  chartType: store.get('chartType', 'candles'),
  universe: new Map(), // sym → {sym, class, tick_size, desc}
  quotes: new Map(), // sym → quote
  dirty: new Set(),
  frame: 0,
};

// ---------- stats (exposed for tests and for the curious) ----------
const stats = { received: 0, applied: 0, rate: 0, latencies: [], latencyP50: null, frames: 0, fps: 0, renderMs: [], renderP99: 0, longTasks: 0, reconnects: 0, status: 'connecting', node: '' };
window.tickstreamStats = stats;
try {
  new PerformanceObserver((l) => { stats.longTasks += l.getEntries().length; }).observe({ type: 'longtask', buffered: true });
} catch { /* not supported */ }

// ---------- quotes ----------
function quoteOf(sym) {
  let q = state.quotes.get(sym);
  if (!q) {
    q = { sym, bid: '', ask: '', last: '', first: null, seq: 0, ts: 0, dir: 0, flip: false, spark: [], sparkAt: 0, hist: [] };
    state.quotes.set(sym, q);
  }
  return q;
}

function applyTick(t) {
  stats.received++;
  if (!state.symbols.includes(t.sym)) return;
  const q = quoteOf(t.sym);
  if (t.seq <= q.seq) return; // older or repeated: a symbol's seq never goes down
  const prevLast = q.last, prevBid = q.bid;
  q.seq = t.seq; q.bid = t.bid; q.ask = t.ask; q.ts = t.ts;
  q.last = t.last;
  if (q.first === null) q.first = t.last;
  q.dir = prevLast ? (Dec.cmp(t.last, prevLast) || Dec.cmp(t.bid, prevBid)) : 0;
  const px = Number(t.last);
  q.spark.push(px);
  if (q.spark.length > 120) q.spark.shift();
  q.hist.push([t.ts / 1e6, px]);
  if (q.hist.length > 3000) q.hist.splice(0, q.hist.length - 3000);
  if (t.sym === state.selected) chartTick(t.ts / 1e6, px);
  state.dirty.add(t.sym);
  stats.applied++;
  const lat = Date.now() - t.ts / 1000;
  if (stats.latencies.length < 2000) stats.latencies.push(lat);
  schedule();
}

function resetQuotes() {
  for (const q of state.quotes.values()) q.seq = 0; // a resync: accept the fresh snapshot
}

// ---------- rendering, once per frame ----------
const sparkWait = new Set(); // rows whose sparkline redraw was deferred

function schedule() {
  if (!state.frame) state.frame = requestAnimationFrame(render);
}

function render() {
  state.frame = 0;
  const t0 = performance.now();
  const now = Date.now();
  for (const sym of state.dirty) {
    const row = rows.get(sym);
    const q = state.quotes.get(sym);
    if (!row || !q) { state.dirty.delete(sym); continue; }
    if (!row.visible) continue; // off screen: stays dirty until scrolled into view
    state.dirty.delete(sym);
    row.bid.textContent = q.bid; row.ask.textContent = q.ask; row.last.textContent = q.last;
    if (q.first !== null) {
      const chg = Dec.sub(q.last, q.first);
      const s = Dec.sign(chg);
      const pct = (Number(chg) / Number(q.first)) * 100;
      row.chg.textContent = (s > 0 ? '+' : '') + chg;
      row.pct.textContent = (s > 0 ? '+' : '') + pct.toFixed(2) + '%';
      const cls = 'num ' + (s > 0 ? 'up' : s < 0 ? 'down' : '');
      row.chg.className = cls; row.pct.className = cls;
    }
    if (q.dir !== 0) {
      // Two identical animations, alternated, restart without forcing layout.
      q.flip = !q.flip;
      const f = (q.dir > 0 ? 'fu' : 'fd') + (q.flip ? '1' : '2');
      row.bid.className = 'num ' + f; row.ask.className = 'num ' + f; row.last.className = 'num hide-s ' + f;
    }
    sparkWait.add(sym);
  }
  for (const sym of sparkWait) {
    const q = state.quotes.get(sym), row = rows.get(sym);
    if (!q || !row || !row.visible) { sparkWait.delete(sym); continue; }
    if (now - q.sparkAt >= 500) { drawSpark(row.spark, q.spark); q.sparkAt = now; sparkWait.delete(sym); }
  }
  if (sparkWait.size && !state.sparkTimer) state.sparkTimer = setTimeout(() => { state.sparkTimer = 0; schedule(); }, 500);
  stats.renderMs.push(performance.now() - t0);
  if (stats.renderMs.length > 600) stats.renderMs.shift();
}

// drawSpark sets an SVG polyline (plain paint, no canvas layer per row).
function drawSpark(line, pts) {
  if (pts.length < 2) { line.setAttribute('points', ''); return; }
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) { if (p < lo) lo = p; if (p > hi) hi = p; }
  const span = hi - lo || 1, n = pts.length - 1;
  let d = '';
  for (let i = 0; i <= n; i++) d += ((i / n) * 94 + 1).toFixed(1) + ',' + (20 - ((pts[i] - lo) / span) * 18).toFixed(1) + ' ';
  line.setAttribute('points', d);
  line.setAttribute('class', pts[n] >= pts[0] ? 'up' : 'down');
}

// once a second: rate, latency, fps, stale check
let lastTick = Date.now();
(function frames() { stats.frames++; requestAnimationFrame(frames); })();
setInterval(() => {
  stats.rate = stats.applied; stats.applied = 0;
  stats.fps = stats.frames; stats.frames = 0;
  if (stats.rate > 0) lastTick = Date.now();
  const l = stats.latencies.sort((a, b) => a - b);
  stats.latencyP50 = l.length ? l[Math.floor(l.length / 2)] : null;
  stats.latencies = [];
  const r = [...stats.renderMs].sort((a, b) => a - b);
  stats.renderP99 = r.length ? r[Math.floor(r.length * 0.99)] : 0;
  $('rate').textContent = stats.rate;
  $('latency').textContent = stats.latencyP50 === null ? '–' : Math.max(0, Math.round(stats.latencyP50)) + ' ms';
  if (conn.status === 'live' && state.symbols.length && Date.now() - lastTick > 20000) setStatus('stale', 'stale · no data for ' + Math.round((Date.now() - lastTick) / 1000) + ' s');
  else if (conn.status === 'stale' && Date.now() - lastTick < 20000) setStatus('live', liveText());
}, 1000);

// ---------- watchlist rows ----------
const rows = new Map();
// Only rows on screen are rendered; the others keep their changes pending.
const seen = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const r = rows.get(e.target.dataset.sym);
    if (!r) continue;
    r.visible = e.isIntersecting;
    if (r.visible && state.quotes.has(r.sym)) { state.dirty.add(r.sym); sparkWait.add(r.sym); schedule(); }
  }
}, { rootMargin: '200px 0px' });

function buildRows() {
  const tbody = $('rows');
  tbody.textContent = '';
  seen.disconnect();
  rows.clear();
  for (const sym of state.symbols) {
    const tr = document.createElement('tr');
    tr.tabIndex = 0;
    tr.dataset.sym = sym;
    const cell = (cls) => { const td = document.createElement('td'); td.className = cls; tr.appendChild(td); return td; };
    const name = cell('');
    const b = document.createElement('button');
    b.className = 'sym'; b.textContent = sym; b.title = (state.universe.get(sym) || {}).desc || sym; b.tabIndex = -1;
    b.onclick = () => select(sym);
    name.appendChild(b);
    const r = { sym, tr, visible: false, bid: cell('num'), ask: cell('num'), last: cell('num hide-s'), chg: cell('num'), pct: cell('num') };
    r.bid.textContent = r.ask.textContent = r.last.textContent = '–'; // no price yet
    const sp = cell('hide-s');
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', 'spark'); svg.setAttribute('viewBox', '0 0 96 22'); svg.setAttribute('aria-hidden', 'true');
    r.spark = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    svg.appendChild(r.spark);
    sp.appendChild(svg);
    const rm = document.createElement('button');
    rm.className = 'rm'; rm.textContent = '×'; rm.title = 'remove ' + sym; rm.setAttribute('aria-label', 'remove ' + sym);
    rm.onclick = () => removeSymbol(sym);
    cell('').appendChild(rm);
    tr.onclick = (e) => { if (e.target.tagName !== 'BUTTON') select(sym); };
    tr.onkeydown = (e) => rowKey(e, sym);
    tbody.appendChild(tr);
    rows.set(sym, r);
    seen.observe(tr);
    if (state.quotes.has(sym)) state.dirty.add(sym);
  }
  $('empty').hidden = state.symbols.length > 0;
  markSelected();
  schedule();
}

function rowKey(e, sym) {
  const tr = e.currentTarget;
  if (e.key === 'Enter') { select(sym); e.preventDefault(); }
  else if (e.key === 'Delete' || e.key === 'Backspace') {
    const next = tr.nextElementSibling || tr.previousElementSibling;
    removeSymbol(sym);
    if (next) rows.get(next.dataset.sym)?.tr.focus();
    e.preventDefault();
  } else if (e.key === 'ArrowDown' && tr.nextElementSibling) { tr.nextElementSibling.focus(); e.preventDefault(); }
  else if (e.key === 'ArrowUp' && tr.previousElementSibling) { tr.previousElementSibling.focus(); e.preventDefault(); }
}

function addSymbol(raw) {
  const sym = raw.trim().toUpperCase();
  if (!sym) return false;
  if (state.universe.size && !state.universe.has(sym)) { flashInput('unknown symbol ' + sym); return false; }
  if (state.symbols.includes(sym)) { rows.get(sym)?.tr.focus(); return true; }
  state.symbols.push(sym);
  store.set('symbols', state.symbols);
  buildRows();
  conn.subscribe([sym]);
  if (!state.selected) select(sym);
  return true;
}

function removeSymbol(sym) {
  state.symbols = state.symbols.filter((s) => s !== sym);
  store.set('symbols', state.symbols);
  state.quotes.delete(sym);
  buildRows();
  conn.unsubscribe([sym]);
  if (state.selected === sym) select(state.symbols[0] || null);
}

function flashInput(msg) {
  const inp = $('search');
  inp.setCustomValidity(msg); inp.reportValidity();
  setTimeout(() => inp.setCustomValidity(''), 1500);
}

// ---------- chart ----------
let chart = null, series = null, bar = null;

function makeChart() {
  const LC = window.LightweightCharts;
  chart = LC.createChart($('chart'), {
    autoSize: true,
    layout: { background: { color: '#0b0e14' }, textColor: '#d6deeb' },
    grid: { vertLines: { color: '#161b25' }, horzLines: { color: '#161b25' } },
    timeScale: { timeVisible: true, secondsVisible: true, borderColor: '#1d2330' },
    rightPriceScale: { borderColor: '#1d2330', minimumWidth: 72 },
    localization: { priceFormatter: (p) => formatPrice(p) },
  });
  resetSeries();
}

function formatPrice(p) {
  const u = state.universe.get(state.selected);
  const dp = u ? Math.max(0, (u.tick_size.split('.')[1] || '').length) : 2;
  return p.toFixed(dp);
}

function resetSeries() {
  if (!chart) return;
  const LC = window.LightweightCharts;
  if (series) chart.removeSeries(series);
  series = state.chartType === 'line'
    ? chart.addSeries(LC.LineSeries, { color: '#4aa3ff', lineWidth: 2 })
    : chart.addSeries(LC.CandlestickSeries, { upColor: '#26c281', downColor: '#ef5350', borderVisible: false, wickUpColor: '#26c281', wickDownColor: '#ef5350' });
  bar = null;
  const q = state.quotes.get(state.selected);
  if (q) for (const [t, p] of q.hist) chartTick(t, p);
  chart.timeScale().scrollToRealTime();
}

function chartTick(tsec, px) {
  if (!series) return;
  const size = state.barSize;
  const t = Math.floor(tsec / size) * size;
  if (state.chartType === 'line') {
    if (bar && t < bar.time) return;
    bar = { time: t, value: px };
  } else if (!bar || t > bar.time) {
    bar = { time: t, open: px, high: px, low: px, close: px };
  } else if (t === bar.time) {
    bar.high = Math.max(bar.high, px); bar.low = Math.min(bar.low, px); bar.close = px;
  } else return;
  series.update({ ...bar });
}

function select(sym) {
  state.selected = sym;
  store.set('selected', sym);
  $('chart-sym').textContent = sym || '–';
  $('chart-desc').textContent = sym ? (state.universe.get(sym) || {}).desc || '' : '';
  markSelected();
  resetSeries();
}

function markSelected() {
  for (const [sym, r] of rows) r.tr.classList.toggle('sel', sym === state.selected);
}

// ---------- connection ----------
const conn = {
  status: 'connecting',
  es: null, ws: null, timer: null, countdown: null, backoff: 500, cursor: '',
  open() {
    this.close();
    if (!state.symbols.length) { setStatus('live', 'idle · no symbols'); return; }
    setStatus('connecting', 'connecting…');
    state.transport === 'ws' ? this.openWS() : this.openSSE();
  },
  close() {
    clearTimeout(this.timer); clearInterval(this.countdown);
    if (this.es) { this.es.close(); this.es = null; }
    if (this.ws) { this.ws.onclose = null; this.ws.close(); this.ws = null; }
  },
  openSSE() {
    const q = new URLSearchParams({ symbols: state.symbols.join(','), interval: state.interval });
    if (this.cursor) q.set('lastEventId', this.cursor);
    if (TOKEN) q.set('access_token', TOKEN);
    const es = new EventSource('stream?' + q);
    this.es = es;
    es.addEventListener('hello', (e) => { const h = JSON.parse(e.data); setNode(h.node); });
    es.addEventListener('ready', (e) => { this.cursor = e.lastEventId || this.cursor; this.up(); });
    es.addEventListener('tick', (e) => { if (e.lastEventId) this.cursor = e.lastEventId; applyTick(JSON.parse(e.data)); });
    es.addEventListener('resync', () => resetQuotes());
    es.addEventListener('lagging', () => setStatus('live', liveText() + ' · lagging'));
    es.addEventListener('goaway', () => { es.close(); this.retry(200 + Math.random() * 800); });
    es.onerror = () => { if (this.es === es) { es.close(); this.retry(); } };
  },
  openWS() {
    const ws = new WebSocket(location.href.replace(/^http/, 'ws').replace(/[#?].*$/, '').replace(/[^/]*$/, '') + 'ws' + (TOKEN ? '?access_token=' + encodeURIComponent(TOKEN) : ''));
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ op: 'subscribe', symbols: state.symbols, interval: state.interval }));
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      switch (m.type) {
        case 'hello': setNode(m.node); break;
        case 'tick': m.data.forEach(applyTick); break;
        case 'ready': this.up(); break;
        case 'resync': resetQuotes(); break;
        case 'lagging': setStatus('live', liveText() + ' · lagging'); break;
        case 'error': console.warn('tickstream:', m.error); break;
      }
    };
    ws.onclose = () => { if (this.ws === ws) this.retry(); };
  },
  up() { this.backoff = 500; setStatus('live', liveText()); lastTick = Date.now(); },
  retry(delay) {
    this.close();
    stats.reconnects++;
    const d = delay ?? this.backoff * (0.5 + Math.random() / 2);
    this.backoff = Math.min(this.backoff * 2, 8000);
    const until = Date.now() + d;
    const show = () => setStatus('reconnecting', 'reconnecting in ' + Math.max(0, (until - Date.now()) / 1000).toFixed(1) + ' s');
    show();
    this.countdown = setInterval(show, 100);
    this.timer = setTimeout(() => { clearInterval(this.countdown); this.open(); }, d);
  },
  subscribe(syms) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ op: 'subscribe', symbols: syms }));
    else this.open(); // SSE: a new stream with the new list
  },
  unsubscribe(syms) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      if (state.symbols.length) this.ws.send(JSON.stringify({ op: 'unsubscribe', symbols: syms }));
      else this.open();
    } else this.open();
  },
  setInterval() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ op: 'interval', interval: state.interval }));
    else this.open();
  },
};

function liveText() { return 'live · ' + (state.transport === 'ws' ? 'WebSocket' : 'SSE'); }
function setNode(n) { stats.node = n; $('node').textContent = n; }
function setStatus(s, text) {
  conn.status = s; stats.status = s;
  const el = $('conn');
  el.className = 'conn ' + s;
  $('conn-text').textContent = text;
}

// ---------- controls ----------
function initControls() {
  $('transport').value = state.transport;
  $('interval').value = state.interval;
  $('barsize').value = String(state.barSize);
  $('charttype').value = state.chartType;
  $('transport').onchange = (e) => { state.transport = e.target.value; store.set('transport', state.transport); conn.cursor = ''; conn.open(); };
  $('interval').onchange = (e) => { state.interval = e.target.value; store.set('interval', state.interval); conn.setInterval(); };
  $('barsize').onchange = (e) => { state.barSize = Number(e.target.value); store.set('barSize', state.barSize); resetSeries(); };
  $('charttype').onchange = (e) => { state.chartType = e.target.value; store.set('chartType', state.chartType); resetSeries(); };
  $('add').onsubmit = (e) => { e.preventDefault(); if (addSymbol($('search').value)) $('search').value = ''; };
  document.addEventListener('keydown', (e) => {
    if (e.key === '/' && document.activeElement.tagName !== 'INPUT') { e.preventDefault(); $('search').focus(); }
  });
}

async function loadUniverse() {
  try {
    const r = await fetch('api/symbols');
    const u = await r.json();
    const dl = $('universe');
    for (const s of u.symbols) {
      state.universe.set(s.sym, s);
      const o = document.createElement('option');
      o.value = s.sym; o.label = s.sym + ' · ' + (s.desc || s.class);
      dl.appendChild(o);
    }
    state.symbols = state.symbols.filter((s) => state.universe.has(s));
  } catch (e) {
    console.warn('tickstream: cannot load the universe', e);
  }
}

async function main() {
  initControls();
  await loadUniverse();
  buildRows();
  makeChart();
  select(state.selected && state.symbols.includes(state.selected) ? state.selected : state.symbols[0] || null);
  conn.open();
}

window.tickstream = { state, conn, addSymbol, removeSymbol, select };
main();
