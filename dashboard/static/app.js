// tickstream dashboard: a watchlist fed by SSE (default) or WebSocket, a
// chart and a time & sales tape of the selected symbol, price alerts.
// Ticks only update state; the DOM is touched once per animation frame,
// for the rows that changed, so hundreds of updates a second stay smooth.
'use strict';

const $ = (id) => document.getElementById(id);
const store = {
  get(k, d) { try { const v = localStorage.getItem('tickstream.' + k); return v === null ? d : JSON.parse(v); } catch { return d; } },
  set(k, v) { try { localStorage.setItem('tickstream.' + k, JSON.stringify(v)); } catch { /* private mode */ } },
};
// A node run with --auth-secret needs a token: open the page with
// ?access_token=… and it is passed on: in Authorization for the page's
// fetches (stream, bars, trades), out of URLs and proxies' logs; in the
// URL for the WebSocket, whose headers a browser cannot set.
const TOKEN = new URLSearchParams(location.search).get('access_token');
const AUTH = TOKEN ? { headers: { Authorization: 'Bearer ' + TOKEN } } : {};
const DEFAULT_SYMBOLS = ['AAPL', 'MSFT', 'NVDA', 'TSLA', 'SPY', 'QQQ', 'EURUSD', 'USDJPY', 'BTC-USD', 'ETH-USD', 'ES', 'GC'];
// A row whose last update is older than this is stale (shown dimmed).
const STALE_MS = store.get('staleAfterMs', 15000);
const TF_SECONDS = { '1s': 1, '5s': 5, '1m': 60, '5m': 300 };
const TAPE_ROWS = 30;
// The chart and the tape are redrawn at most every SIDE_MS.
const SIDE_MS = 250;
const side = { at: 0 };
// lightweight-charts shows times as UTC: shift them to the clock shown,
// the browser's (local) or UTC (the switch in the header).
const LOCAL_TZ = -new Date().getTimezoneOffset() * 60;
let TZ = store.get('utc', false) ? 0 : LOCAL_TZ;
function tzLabel() {
  if (!TZ) return 'UTC';
  const m = Math.abs(TZ / 60);
  return 'UTC' + (TZ > 0 ? '+' : '−') + pad2(Math.floor(m / 60)) + ':' + pad2(m % 60);
}

const state = {
  symbols: store.get('symbols', DEFAULT_SYMBOLS),
  transport: store.get('transport', 'sse'),
  interval: store.get('interval', '250ms'),
  selected: store.get('selected', null),
  tf: TF_SECONDS[store.get('tf', '1s')] ? store.get('tf', '1s') : '1s', // 1 s: a full chart a minute after start
  chartType: store.get('chartType', 'candles'),
  sort: store.get('sort', null), // {key, dir: 1 | -1}
  alerts: store.get('alerts', []), // [{id, sym, op: 'above'|'below', price, fired}]
  sound: store.get('sound', false),
  universe: new Map(), // sym → {sym, class, tick_size, desc, prev_close, open}
  quotes: new Map(), // sym → quote
  dirty: new Set(),
  frame: 0,
  renderedAt: 0, // performance.now() of the last render pass
  // Feed clock to page clock: the smallest (arrival − feed ts) seen, so a
  // skewed clock does not make every row look stale or fresh.
  clockOffset: Infinity,
};

// ---------- stats (exposed for tests and for the curious) ----------
const stats = { received: 0, applied: 0, rate: 0, latencies: [], latencyP50: null, frames: 0, fps: 0, renderMs: [], renderP99: 0, longTasks: 0, reconnects: 0, status: 'connecting', node: '', stale: 0 };
window.tickstreamStats = stats;
try {
  new PerformanceObserver((l) => { stats.longTasks += l.getEntries().length; }).observe({ type: 'longtask', buffered: true });
} catch { /* not supported */ }

// ---------- formatting ----------
const pad2 = (n) => (n < 10 ? '0' : '') + n;
function fmtTime(tsMicros, ms) {
  const d = new Date(tsMicros / 1000 + TZ * 1000);
  let s = pad2(d.getUTCHours()) + ':' + pad2(d.getUTCMinutes()) + ':' + pad2(d.getUTCSeconds());
  if (ms) s += '.' + String(d.getUTCMilliseconds()).padStart(3, '0');
  return s;
}
// group puts thousands separators in a decimal string's whole part
// ("67281.34" → "67,281.34"); the digits themselves are the wire's.
function group(v) {
  if (!v) return v;
  const dot = v.indexOf('.'), end = dot < 0 ? v.length : dot, start = v[0] === '-' || v[0] === '+' ? 1 : 0;
  if (end - start <= 3) return v;
  let out = v.slice(0, start), i = start, first = (end - start) % 3 || 3;
  out += v.slice(i, i + first); i += first;
  for (; i < end; i += 3) out += ',' + v.slice(i, i + 3);
  return out + v.slice(end);
}
function fmtVol(v) {
  if (v < 1e4) return String(v);
  if (v < 1e6) return (v / 1e3).toFixed(1) + 'K';
  if (v < 1e9) return (v / 1e6).toFixed(2) + 'M';
  return (v / 1e9).toFixed(2) + 'B';
}
// The symbol's decimals (from its tick size), to write a reference price
// the way the wire writes its prices.
function scaleOf(sym) {
  const u = state.universe.get(sym);
  return u ? (String(u.tick_size).split('.')[1] || '').length : 2;
}
function onGrid(sym, p) {
  if (p === undefined || p === null || p === '') return '';
  const d = Dec.parse(String(p)), s = scaleOf(sym);
  return s >= d.s ? Dec.format(d.n * 10n ** BigInt(s - d.s), s) : String(p);
}
// change against the previous close: exact, and never "-0.00%".
function changeOf(sym, last) {
  const u = state.universe.get(sym);
  if (!u || !u.prev_close || !last) return null;
  const chg = Dec.sub(last, String(u.prev_close));
  let pct = ((Number(chg) / Number(u.prev_close)) * 100).toFixed(2);
  if (Number(pct) === 0) pct = '0.00';
  const s = Dec.sign(chg);
  return { chg: (s > 0 ? '+' : '') + chg, pct: (Number(pct) > 0 ? '+' : '') + pct + '%', sign: s, chgN: Number(chg), pctN: Number(pct) };
}

// ---------- quotes ----------
function quoteOf(sym) {
  let q = state.quotes.get(sym);
  if (!q) {
    q = { sym, bid: '', ask: '', last: '', seq: 0, ts: 0, vol: 0, hi: '', lo: '', fresh: 0, spark: [], sparkAt: 0 };
    state.quotes.set(sym, q);
  }
  return q;
}

function applyTick(t) {
  stats.received++;
  const q = state.quotes.get(t.sym);
  if (!q && !state.symbols.includes(t.sym)) return;
  const quote = q || quoteOf(t.sym);
  if (t.seq <= quote.seq) {
    // Older or repeated: a symbol's seq never goes down, unless the feed
    // restarted (a seq back with a later feed time): then everything
    // derived from ticks starts again.
    if (t.seq === quote.seq || t.ts <= quote.ts + 1e6) return;
    restarted(t.sym);
  }
  const prevVol = quote.vol;
  quote.seq = t.seq; quote.bid = t.bid; quote.ask = t.ask; quote.last = t.last; quote.ts = t.ts;
  if (t.vol !== undefined) quote.vol = t.vol;
  if (t.sym === state.selected) {
    // The session volume on the tick counts the ticks conflation skipped.
    chartTick(t, prevVol && t.vol >= prevVol ? t.vol - prevVol : t.size || 0);
    if (t.seq > (tape.seq ?? Infinity)) tape.behind = true;
  }
  if (t.hi !== undefined) { quote.hi = t.hi; quote.lo = t.lo; }
  // A snapshot's tick carries the session reference (as /api/symbols does).
  if (t.prev_close !== undefined) {
    const u = state.universe.get(t.sym);
    if (u && u.prev_close !== t.prev_close) { u.prev_close = t.prev_close; if (t.open !== undefined) u.open = t.open; }
  }
  const now = Date.now(), feedMs = t.ts / 1000;
  if (now - feedMs < state.clockOffset) state.clockOffset = now - feedMs;
  quote.fresh = feedMs;
  quote.spark.push(Number(t.last));
  if (quote.spark.length > 120) quote.spark.shift();
  const al = alertsBySym.get(t.sym);
  if (al) checkAlerts(al, t);
  state.dirty.add(t.sym);
  stats.applied++;
  if (stats.latencies.length < 2000) stats.latencies.push(now - feedMs);
  schedule();
}

function resetQuotes() {
  for (const q of state.quotes.values()) { q.seq = 0; q.spark = []; } // a resync: accept the fresh snapshot
}

// resync: history was lost (a resync event, a new epoch, a seq gone back):
// the quotes take the fresh snapshot, and the chart and the tape are read
// again, so every panel shows the same moment.
function resync() {
  resetQuotes();
  resetSeries();
  openTape(state.selected);
}

// restarted handles one symbol's seq going back without a resync.
function restarted(sym) {
  const q = state.quotes.get(sym);
  if (q) { q.seq = 0; q.spark = []; }
  if (sym === state.selected) { resetSeries(); openTape(sym); }
}

// epochOf returns a cursor's epoch: a new one means the node lost history.
function epochOf(cursor) { const i = (cursor || '').indexOf('.'); return i < 0 ? cursor || '' : cursor.slice(0, i); }

// ---------- rendering, once per frame ----------
const sparkWait = new Set(); // rows whose sparkline redraw was deferred

// schedule asks for a render pass at the next frame. Called while ticks
// are handled, it also brings the chart and the tape up to date (at most
// four times a second): the chart library draws in the same frame as the
// watchlist, not in one more frame of its own.
function schedule() {
  if (state.frame) return;
  state.frame = requestAnimationFrame(render);
  if (performance.now() - side.at >= SIDE_MS) sideUpdate();
}

// renderSoon is for the timers that take flashes off and draw deferred
// sparklines: while ticks arrive, the next render pass does that work
// anyway, so a timer asks for a frame only when none was rendered lately
// (an extra frame costs Chromium a whole rendering pass).
function renderSoon() {
  if (performance.now() - state.renderedAt > 150) schedule();
}

// A value cell holds <span class="v"> (a relayout boundary: see
// style.css) holding one Text node: a new value changes that node's
// characters, so Chromium lays out that span alone (not the table), and
// builds no node or layout object per update.
function put(cell, val) {
  const v = cell.firstChild;
  v.firstChild.data = val;
  if (v.lastChild !== v.firstChild && v.lastChild.firstChild) { v.lastChild.textContent = ''; v.lastChild.className = ''; }
}

// Flashes: when a price moves, only its digits that changed light up
// (green up, red down) for FLASH_MS, shorter than the update interval, and
// a cell flashes at most once every FLASH_GAP: at the default interval a
// busy watchlist shows a few calm flashes, not a block of lit columns. A
// value cell holds a Text node (the unchanged part) and an <i> (the
// changed digits); a flash is a class on the <i>, set and taken off in a
// render pass (no animation: nothing to redo at every frame). At most a
// fifth of the price cells are lit at once (maxLit).
const FLASH_MS = 180;
const FLASH_GAP = 1000;
const flashing = new Map(); // cell -> {until}

// flash sets a cell's text and, when the value moved, flashes the digits
// that changed.
function flash(row, key, cell, val, extra) {
  const was = row.shown[key];
  if (was === val) return;
  row.shown[key] = val;
  const shown = group(val), before = group(was);
  if (!was || !val) { put(cell, shown); return; }
  // Same-scale decimal strings: their floats order them exactly enough.
  const a = Number(val), b = Number(was);
  const dir = a > b ? 1 : a < b ? -1 : Dec.cmp(val, was);
  const last = row.flashAt[key] || 0;
  if (dir === 0 || flashNow - last < FLASH_GAP || flashing.size >= maxLit()) { put(cell, shown); return; }
  row.flashAt[key] = flashNow + Math.random() * FLASH_GAP / 2; // spread: cells do not flash in step
  let k = 0;
  while (k < shown.length && k < before.length && shown[k] === before[k]) k++;
  const v = cell.firstChild;
  v.firstChild.data = shown.slice(0, k);
  const i = v.lastChild;
  i.textContent = shown.slice(k);
  i.className = dir > 0 ? 'fu' : 'fd';
  flashing.set(cell, { until: flashNow + Math.min(FLASH_MS, 0.8 * intervalMs()) });
}
// maxLit is the most price cells lit at once: a fifth of the watchlist's.
function maxLit() { return Math.max(1, Math.floor(rows.size * 3 / 5)); }
// intervalMs is the update interval asked for, in ms (0: every tick).
function intervalMs() {
  const m = /^(\d+(?:\.\d+)?)(ms|s)$/.exec(state.interval);
  return m ? Number(m[1]) * (m[2] === 's' ? 1000 : 1) || FLASH_MS : FLASH_MS;
}
let flashNow = 0;

function flashTick() {
  state.flashTimer = 0;
  if (!flashing.size) return;
  renderSoon();
  if (!state.frame) state.flashTimer = setTimeout(flashTick, 100);
}

// unflash takes the flash off the cells whose time is up, and comes back
// when some are still lit.
function unflash(now) {
  for (const [cell, f] of flashing) {
    if (now >= f.until) { cell.firstChild.lastChild.className = ''; flashing.delete(cell); }
  }
  if (flashing.size && !state.flashTimer) state.flashTimer = setTimeout(flashTick, 100);
}

// A render pass updates at most ROWS_PER_FRAME rows, the longest pending
// first; the rest wait for the next frame. The node writes a whole
// interval's changes at once: at 1400×900 ~40 visible rows, whose layout,
// paint and the rest cost Chromium one long frame (with 200 symbols at
// 100 ms, ten a second). In two frames, the longest frame is about a third
// shorter (traced: 22-24 ms of CPU instead of 28-32, the median 8-10 instead
// of 15-17), for ~25% more of the main thread's time in all (a frame's
// fixed costs, twice): fewer tasks over 50 ms on a busy machine.
const ROWS_PER_FRAME = 20;

function render() {
  state.frame = 0;
  state.renderedAt = performance.now();
  const t0 = performance.now();
  const now = Date.now();
  flashNow = now;
  let budget = ROWS_PER_FRAME, more = false;
  for (const sym of state.dirty) {
    const row = rows.get(sym);
    const q = state.quotes.get(sym);
    if (!row || !q) { state.dirty.delete(sym); continue; }
    if (!row.visible) continue; // off screen: stays dirty until scrolled into view
    if (budget-- <= 0) { more = true; break; }
    state.dirty.delete(sym);
    flash(row, 'bid', row.bid, q.bid, 'num ');
    flash(row, 'ask', row.ask, q.ask, 'num ');
    flash(row, 'last', row.last, q.last, 'num hide-s ');
    const c = changeOf(sym, q.last);
    if (c && row.shown.chg !== c.chg) {
      row.shown.chg = c.chg;
      put(row.chg, group(c.chg)); put(row.pct, c.pct);
      const cls = 'num ' + (c.sign > 0 ? 'up' : c.sign < 0 ? 'down' : '');
      row.chg.className = cls; row.pct.className = cls;
    }
    if (q.bid && q.ask && (row.sprBid !== q.bid || row.sprAsk !== q.ask)) {
      row.sprBid = q.bid; row.sprAsk = q.ask;
      setText(row, 'spread', row.spread, Dec.sub(q.ask, q.bid));
    }
    if (q.vol) setText(row, 'vol', row.vol, fmtVol(q.vol));
    if (q.hi) { setText(row, 'hi', row.hi, group(q.hi)); setText(row, 'lo', row.lo, group(q.lo)); }
    const sec = Math.floor(q.ts / 1e6);
    if (q.ts && row.sec !== sec) { row.sec = sec; setText(row, 'time', row.time, fmtTime(q.ts)); }
    if (row.stale && now - (q.fresh + state.clockOffset) < STALE_MS && conn.status === 'live') markStale(row, false, '');
    sparkWait.add(sym);
  }
  // At most SPARKS_PER_FRAME sparklines a frame, longest waiting first:
  // drawn together every 500 ms, the visible rows' ~40 made a spike (their
  // points, then their SVG layout and paint) twice a second.
  let sparks = SPARKS_PER_FRAME;
  for (const sym of sparkWait) {
    const q = state.quotes.get(sym), row = rows.get(sym);
    if (!q || !row || !row.visible) { sparkWait.delete(sym); continue; }
    if (now - q.sparkAt >= 500) {
      if (sparks-- <= 0) break;
      drawSpark(row.spark, q.spark); q.sparkAt = now; sparkWait.delete(sym);
    }
  }
  unflash(now);
  if (more) schedule();
  if (sparkWait.size && !state.sparkTimer) state.sparkTimer = setTimeout(sparkTick, 500);
  stats.renderMs.push(performance.now() - t0);
  if (stats.renderMs.length > 600) stats.renderMs.shift();
}

const SPARKS_PER_FRAME = 8;

function sparkTick() {
  state.sparkTimer = 0;
  if (!sparkWait.size) return;
  renderSoon();
  if (!state.frame) state.sparkTimer = setTimeout(sparkTick, 200);
}

function setText(row, key, cell, val) {
  if (row.shown[key] !== val) { row.shown[key] = val; put(cell, val); }
}

const sparkXs = []; // per point count, the x coordinates' text

// drawSpark sets an SVG polyline (plain paint, no canvas layer per row).
function drawSpark(line, pts) {
  if (pts.length < 2) { line.setAttribute('points', ''); return; }
  let lo = Infinity, hi = -Infinity;
  for (const p of pts) { if (p < lo) lo = p; if (p > hi) hi = p; }
  const span = hi - lo || 1, n = pts.length - 1;
  const xs = sparkXs[n] || (sparkXs[n] = Array.from({ length: n + 1 }, (_, i) => ((i / n) * 62 + 1).toFixed(1) + ','));
  let d = '';
  for (let i = 0; i <= n; i++) d += xs[i] + Math.round(190 - ((pts[i] - lo) / span) * 180) / 10 + ' ';
  line.setAttribute('points', d);
  line.setAttribute('class', pts[n] >= pts[0] ? 'up' : 'down');
}

// ---------- staleness ----------
// A row is stale when the connection is not live, or when its last update
// (feed time) is older than STALE_MS; it says why in a tooltip.
function markStale(row, stale, why) {
  if (row.stale !== stale) {
    row.stale = stale;
    row.tr.dataset.stale = stale ? 'true' : 'false';
  }
  const title = stale ? 'stale: ' + why : 'live · a row goes stale after ' + STALE_MS / 1000 + ' s without an update';
  if (row.title !== title) { row.title = title; row.name.title = title; }
}

function checkStale() {
  const now = Date.now();
  const down = conn.status !== 'live';
  let n = 0;
  for (const row of rows.values()) {
    const q = state.quotes.get(row.sym);
    if (down) {
      markStale(row, true, 'not connected to a node (' + $('conn-text').textContent + ')' + (q && q.ts ? '; last update ' + fmtTime(q.ts) : ''));
    } else if (q && q.fresh) {
      const age = now - (q.fresh + state.clockOffset);
      if (age >= STALE_MS) markStale(row, true, 'no update for ' + Math.round(age / 1000) + ' s (last ' + fmtTime(q.ts) + '); a row goes stale after ' + STALE_MS / 1000 + ' s without one');
      else markStale(row, false, '');
    } else {
      markStale(row, false, '');
    }
    if (row.stale) n++;
  }
  stats.stale = n;
}
setInterval(checkStale, 500);

// once a second: rate, latency, fps, sort
(function frames() { stats.frames++; requestAnimationFrame(frames); })();
setInterval(() => {
  stats.rate = stats.applied; stats.applied = 0;
  stats.fps = stats.frames; stats.frames = 0;
  const l = stats.latencies.sort((a, b) => a - b);
  stats.latencyP50 = l.length ? l[Math.floor(l.length / 2)] : null;
  stats.latencies = [];
  const r = [...stats.renderMs].sort((a, b) => a - b);
  stats.renderP99 = r.length ? r[Math.floor(r.length * 0.99)] : 0;
  $('rate').textContent = stats.rate;
  $('latency').textContent = stats.latencyP50 === null ? '–' : Math.max(0, Math.round(stats.latencyP50)) + ' ms';
  if (state.sort) applySort();
}, 1000);

// ---------- watchlist rows ----------
const rows = new Map();
// Only rows on screen (and a row or so beyond: a scroll shows them at
// once) are rendered; the others keep their changes pending.
const seen = new IntersectionObserver((entries) => {
  for (const e of entries) {
    const r = rows.get(e.target.dataset.sym);
    if (!r) continue;
    r.visible = e.isIntersecting;
    if (r.visible && state.quotes.has(r.sym)) { state.dirty.add(r.sym); sparkWait.add(r.sym); schedule(); }
  }
}, { rootMargin: '40px 0px' });

function buildRows() {
  const tbody = $('rows');
  tbody.textContent = '';
  seen.disconnect();
  rows.clear();
  for (const sym of state.symbols) {
    const tr = document.createElement('tr');
    tr.setAttribute('role', 'row'); // laid out as a grid (style.css): the table's roles said
    tr.tabIndex = 0;
    tr.dataset.sym = sym;
    tr.dataset.stale = 'false';
    const cell = (cls) => { const td = document.createElement('td'); td.className = cls; td.setAttribute('role', 'cell'); tr.appendChild(td); return td; };
    const textCell = (cls) => { const v = document.createElement('span'); v.className = 'v'; v.appendChild(document.createTextNode('')); cell(cls).appendChild(v); return v.parentNode; };
    const priceCell = (cls) => { const c = textCell(cls); c.firstChild.appendChild(document.createElement('i')); return c; };
    const name = cell('');
    const b = document.createElement('button');
    b.className = 'sym'; b.textContent = sym; b.tabIndex = -1;
    b.onclick = () => select(sym);
    name.appendChild(b);
    const r = {
      sym, tr, name, visible: false, stale: false, title: '', shown: {}, flip: {}, flashAt: {},
      bid: priceCell('num'), ask: priceCell('num'), last: priceCell('num hide-s'), chg: textCell('num'), pct: textCell('num'),
      spread: textCell('num hide-s'), vol: textCell('num hide-s'), hi: textCell('num hide-m'), lo: textCell('num hide-m'), time: textCell('num hide-s muted'),
    };
    put(r.bid, '–'); put(r.ask, '–'); put(r.last, '–'); // no price yet
    const sp = cell('hide-m');
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('class', 'spark'); svg.setAttribute('viewBox', '0 0 64 20'); svg.setAttribute('aria-hidden', 'true');
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
  markAlerted();
  if (state.sort) applySort();
  checkStale();
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
  else if (e.key === 'a' && !e.ctrlKey && !e.metaKey) { prefillAlert(sym); e.preventDefault(); }
}

function addSymbol(raw) {
  const sym = raw.trim().toUpperCase();
  if (!sym) return false;
  if (state.universe.size && !state.universe.has(sym)) { flashInput($('search'), 'unknown symbol ' + sym); return false; }
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

function flashInput(inp, msg) {
  inp.setCustomValidity(msg); inp.reportValidity();
  setTimeout(() => inp.setCustomValidity(''), 1500);
}

// ---------- sorting ----------
function sortValue(sym, key) {
  const q = state.quotes.get(sym);
  if (key === 'sym') return sym;
  if (!q || !q.last) return null;
  switch (key) {
    case 'chg': case 'pct': { const c = changeOf(sym, q.last); return c ? (key === 'chg' ? c.chgN : c.pctN) : null; }
    case 'spread': return Number(q.ask) - Number(q.bid);
    case 'vol': return q.vol;
    case 'ts': return q.ts;
    default: return Number(q[key]) || null;
  }
}

// applySort puts the rows in the chosen order, moving DOM nodes only when
// the order changed (and keeping the focused row focused).
function applySort() {
  const { key, dir } = state.sort;
  const order = [...state.symbols];
  const vals = new Map(order.map((s) => [s, sortValue(s, key)]));
  order.sort((a, b) => {
    const x = vals.get(a), y = vals.get(b);
    if (x === y) return 0;
    if (x === null) return 1; // no value yet: last either way
    if (y === null) return -1;
    return (x < y ? -1 : 1) * dir;
  });
  const tbody = $('rows');
  const cur = [...tbody.children].map((tr) => tr.dataset.sym);
  if (cur.length === order.length && cur.every((s, i) => s === order[i])) return;
  const focused = document.activeElement;
  for (const s of order) { const r = rows.get(s); if (r) tbody.appendChild(r.tr); }
  if (focused && focused !== document.activeElement && document.contains(focused)) focused.focus({ preventScroll: true });
}

function setSort(key) {
  const s = state.sort;
  if (!s || s.key !== key) state.sort = { key, dir: key === 'sym' ? 1 : -1 };
  else if ((key === 'sym' ? s.dir === 1 : s.dir === -1)) state.sort = { key, dir: -s.dir };
  else state.sort = null; // third click: the watchlist's own order
  store.set('sort', state.sort);
  showSort();
  if (state.sort) applySort(); else buildRows();
}

function showSort() {
  for (const th of document.querySelectorAll('#heads th[data-key]')) {
    if (state.sort && th.dataset.key === state.sort.key) th.setAttribute('aria-sort', state.sort.dir > 0 ? 'ascending' : 'descending');
    else th.removeAttribute('aria-sort');
  }
}

// ---------- chart ----------
let chart = null, series = null, volSeries = null, refLine = null;
const chartState = { gen: 0, seq: null, bar: null, pending: [], count: 0, grew: false };

function makeChart() {
  const LC = window.LightweightCharts;
  chart = LC.createChart($('chart'), {
    autoSize: true,
    layout: { background: { color: '#0b0e14' }, textColor: '#d6deeb' },
    grid: { vertLines: { color: '#161b25' }, horzLines: { color: '#161b25' } },
    timeScale: { timeVisible: true, secondsVisible: true, borderColor: '#1d2330', rightOffset: 4, minBarSpacing: 2 },
    rightPriceScale: { borderColor: '#1d2330', minimumWidth: 72 },
    localization: { priceFormatter: (p) => p.toFixed(scaleOf(state.selected)) },
  });
  resetSeries();
}

function resetSeries() {
  if (!chart) return;
  const LC = window.LightweightCharts;
  if (series) chart.removeSeries(series);
  if (volSeries) chart.removeSeries(volSeries);
  series = state.chartType === 'line'
    ? chart.addSeries(LC.LineSeries, { color: '#4aa3ff', lineWidth: 2 })
    : chart.addSeries(LC.CandlestickSeries, { upColor: '#26c281', downColor: '#ef5350', borderVisible: false, wickUpColor: '#26c281', wickDownColor: '#ef5350' });
  volSeries = chart.addSeries(LC.HistogramSeries, { priceScaleId: 'vol', priceFormat: { type: 'volume' }, color: 'rgba(74, 163, 255, .35)', lastValueVisible: false, priceLineVisible: false });
  chart.priceScale('vol').applyOptions({ scaleMargins: { top: 0.82, bottom: 0 } });
  series.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.22 } });
  const u = state.universe.get(state.selected);
  refLine = u && u.prev_close ? series.createPriceLine({ price: Number(u.prev_close), color: '#8a94a6', lineWidth: 1, lineStyle: 2, axisLabelVisible: true, title: 'prev close' }) : null;
  loadBars();
}

// loadBars fetches the selected symbol's bars (history from the node's
// memory), then continues them with the ticks of the raw tape stream.
async function loadBars() {
  const gen = ++chartState.gen, sym = state.selected, tf = state.tf;
  chartState.seq = null; chartState.bar = null; chartState.pending = []; chartState.lastTs = 0; chartState.count = 0;
  series.setData([]); volSeries.setData([]);
  if (!sym) return;
  try {
    const r = await fetch('api/bars?' + new URLSearchParams({ symbol: sym, tf, limit: '300' }), AUTH);
    const body = await r.json();
    if (gen !== chartState.gen) return;
    if (!r.ok) throw new Error(body.error || r.status);
    const line = state.chartType === 'line';
    series.setData(body.bars.map((b) => line
      ? { time: b.t + TZ, value: Number(b.c) }
      : { time: b.t + TZ, open: Number(b.o), high: Number(b.h), low: Number(b.l), close: Number(b.c) }));
    volSeries.setData(body.bars.map((b) => ({ time: b.t + TZ, value: b.v })));
    const lb = body.bars[body.bars.length - 1];
    chartState.bar = lb ? { time: lb.t + TZ, open: Number(lb.o), high: Number(lb.h), low: Number(lb.l), close: Number(lb.c), v: lb.v } : null;
    chartState.seq = body.seq;
    chartState.lastTs = lb ? lb.t * 1e6 : 0;
    stats.bars = body.bars.length;
    for (const [t, v] of chartState.pending) chartTick(t, v);
    chartState.pending = [];
    // A short history fills the width; a long one shows its newest part.
    // (with a margin, so that no time label is cut at the left edge).
    chartState.count = body.bars.length;
    fitBars(true);
  } catch (e) {
    console.warn('tickstream: cannot load bars', e);
    chartState.seq = 0;
  }
}

// fitBars fits the visible range to the bars there are while they are
// fewer than a plot holds (with a margin, so that no time label is cut at
// the left edge); a long history shows its newest part.
function fitBars(loaded) {
  const n = chartState.count || 0;
  if (n < 100) chart.timeScale().setVisibleLogicalRange({ from: -Math.max(2, n / 12), to: n + 2 });
  else if (loaded) chart.timeScale().scrollToRealTime();
}

// chartTick continues the chart with a tick of the selected symbol (from
// the watchlist's stream: conflated, so the forming bar is refreshed from
// the node every few seconds to take in the extremes conflation skipped).
function chartTick(t, vol) {
  if (chartState.seq === null) { if (chartState.pending.length < 1000) chartState.pending.push([t, vol]); return; }
  if (t.seq <= chartState.seq) return;
  chartState.seq = t.seq;
  chartState.lastTs = Math.max(chartState.lastTs || 0, t.ts);
  const size = TF_SECONDS[state.tf];
  const time = Math.floor(t.ts / 1e6 / size) * size + TZ, px = Number(t.last);
  let bar = chartState.bar;
  if (!bar || time > bar.time) { bar = chartState.bar = { time, open: px, high: px, low: px, close: px, v: 0 }; chartState.count++; chartState.grew = true; }
  else if (time < bar.time) return;
  bar.high = Math.max(bar.high, px); bar.low = Math.min(bar.low, px); bar.close = px; bar.v += vol;
  chartState.dirty = true;
}

// Every 3 s the newest bars are read again from the node, exact (every
// tick, not the conflated ones the page saw).
setInterval(async () => {
  const gen = chartState.gen, sym = state.selected, tf = state.tf;
  if (!sym || chartState.seq === null || document.hidden) return;
  try {
    const r = await fetch('api/bars?' + new URLSearchParams({ symbol: sym, tf, limit: '2' }), AUTH);
    const body = await r.json();
    if (gen !== chartState.gen || !r.ok || body.seq < chartState.seq) return;
    const line = state.chartType === 'line';
    for (const b of body.bars) {
      if (chartState.bar && b.t + TZ < chartState.bar.time - TF_SECONDS[tf]) continue;
      series.update(line ? { time: b.t + TZ, value: Number(b.c) } : { time: b.t + TZ, open: Number(b.o), high: Number(b.h), low: Number(b.l), close: Number(b.c) });
      volSeries.update({ time: b.t + TZ, value: b.v });
    }
    const lb = body.bars[body.bars.length - 1];
    if (lb && (!chartState.bar || lb.t + TZ >= chartState.bar.time)) {
      chartState.bar = { time: lb.t + TZ, open: Number(lb.o), high: Number(lb.h), low: Number(lb.l), close: Number(lb.c), v: lb.v };
      chartState.seq = body.seq;
    }
  } catch { /* the next round */ }
}, 3000);

// chart and tape redraws are batched: at most four a second, when ticks
// are handled (see schedule), or from this timer when none come.
setInterval(() => { if (performance.now() - side.at >= 2 * SIDE_MS) sideUpdate(); }, SIDE_MS);
function sideUpdate() {
  side.at = performance.now();
  if (chartState.dirty && series && chartState.bar) {
    chartState.dirty = false;
    const b = chartState.bar;
    series.update(state.chartType === 'line' ? { time: b.time, value: b.close } : { time: b.time, open: b.open, high: b.high, low: b.low, close: b.close });
    volSeries.update({ time: b.time, value: b.v });
    if (chartState.grew) { chartState.grew = false; fitBars(false); }
  }
  if (tape.dirty) renderTape();
  markPanels();
}

// markPanels says on the chart and the tape what a trader sees: stale
// (dimmed) when the connection is down or the selected symbol's row is
// stale, and the feed time (Unix µs) of the newest tick each has drawn.
function markPanels() {
  const row = rows.get(state.selected);
  const stale = conn.status !== 'live' || (row ? row.stale : false);
  const t = tape.list.length ? tape.list[tape.list.length - 1].ts : 0;
  for (const [el, last] of [[$('chart-panel'), chartState.lastTs || 0], [$('tape-panel'), t]]) {
    if (el.dataset.stale !== String(stale)) el.dataset.stale = String(stale);
    if (el.dataset.lastTime !== String(last)) el.dataset.lastTime = String(last);
  }
}

// ---------- time & sales: the newest ticks of the selected symbol ----------
// The node keeps every symbol's last ticks (all of them, not conflated);
// the page reads them again whenever the watchlist's stream shows that the
// symbol traded since, at most twice a second: a hot symbol's raw
// stream (thousands of ticks a second) would cost the page more than it
// can show.
const tape = { sym: null, gen: 0, seq: null, list: [], dirty: false, behind: false, busy: false, rows: [] };

function openTape(sym) {
  tape.sym = sym; tape.seq = null; tape.list = []; tape.dirty = true; tape.gen++;
  $('tape-sym').textContent = sym || '';
  renderTape();
  if (sym) loadTrades();
}

async function loadTrades() {
  const gen = tape.gen, sym = tape.sym;
  tape.busy = true; tape.behind = false;
  try {
    const r = await fetch('api/trades?' + new URLSearchParams({ symbol: sym, limit: String(TAPE_ROWS) }), AUTH);
    const body = await r.json();
    if (gen !== tape.gen) return;
    if (!r.ok) throw new Error(body.error || r.status);
    tape.list = body.trades;
    tape.seq = tape.list.length ? tape.list[tape.list.length - 1].seq : 0;
    tape.dirty = true;
  } catch (e) {
    if (gen === tape.gen && tape.seq === null) { console.warn('tickstream: cannot load trades', e); tape.seq = 0; }
  } finally {
    if (gen === tape.gen) tape.busy = false;
  }
}
setInterval(() => { if (tape.sym && tape.behind && !tape.busy && !document.hidden) loadTrades(); }, 500);

function renderTape() {
  tape.dirty = false;
  const tbody = $('tape-rows');
  const n = Math.min(TAPE_ROWS, tape.list.length);
  while (tape.rows.length < n) {
    const tr = document.createElement('tr');
    tr.innerHTML = '<td></td><td class="num"></td><td class="num"></td>';
    tbody.appendChild(tr);
    tape.rows.push(tr);
  }
  while (tape.rows.length > n) tape.rows.pop().remove();
  for (let i = 0; i < n; i++) {
    const t = tape.list[tape.list.length - 1 - i], tr = tape.rows[i];
    if (tr.dataset.seq === String(t.seq)) continue;
    tr.dataset.seq = t.seq;
    tr.className = t.side;
    tr.cells[0].textContent = fmtTime(t.ts, true);
    tr.cells[1].textContent = t.price;
    tr.cells[2].textContent = fmtVol(t.size);
  }
}

function select(sym) {
  state.selected = sym;
  store.set('selected', sym);
  const u = state.universe.get(sym) || {};
  $('chart-sym').textContent = sym || '–';
  $('chart-desc').textContent = sym ? u.desc || '' : '';
  $('chart-ref').textContent = sym && u.prev_close ? 'prev close ' + onGrid(sym, u.prev_close) + (u.open ? ' · open ' + onGrid(sym, u.open) : '') : '';
  if (sym) $('alert-sym').value = sym; // the alert form follows the selection
  markSelected();
  resetSeries();
  openTape(sym);
}

function markSelected() {
  for (const [sym, r] of rows) r.tr.classList.toggle('sel', sym === state.selected);
}

// ---------- price alerts ----------
let alertsBySym = new Map();
let audio = null;

function indexAlerts() {
  alertsBySym = new Map();
  for (const a of state.alerts) {
    if (a.fired) continue;
    if (!alertsBySym.has(a.sym)) alertsBySym.set(a.sym, []);
    alertsBySym.get(a.sym).push(a);
  }
}

function saveAlerts() {
  store.set('alerts', state.alerts);
  indexAlerts();
  renderAlerts();
  markAlerted();
}

function checkAlerts(list, t) {
  for (const a of list) {
    const c = Dec.cmp(t.last, a.price);
    if ((a.op === 'above' && c >= 0) || (a.op === 'below' && c <= 0)) fireAlert(a, t);
  }
}

function fireAlert(a, t) {
  a.fired = true; a.firedAt = Date.now(); a.firedPrice = t.last;
  saveAlerts();
  const msg = a.sym + ' ' + t.last + ' ' + (a.op === 'above' ? '≥' : '≤') + ' ' + a.price;
  const el = document.createElement('div');
  el.className = 'toast'; el.textContent = '🔔 ' + msg;
  $('toasts').appendChild(el);
  setTimeout(() => el.remove(), 8000);
  stats.alertsFired = (stats.alertsFired || 0) + 1;
  if (state.sound) beep();
}

function beep() {
  try {
    audio = audio || new AudioContext();
    const o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = 880; g.gain.value = 0.08;
    o.connect(g); g.connect(audio.destination);
    o.start(); o.stop(audio.currentTime + 0.18);
  } catch { /* no audio */ }
}

function renderAlerts() {
  const ul = $('alert-list');
  ul.textContent = '';
  for (const a of state.alerts) {
    const li = document.createElement('li');
    if (a.fired) li.className = 'fired';
    const s = document.createElement('span');
    s.textContent = a.sym + ' ' + a.op + ' ' + a.price + (a.fired ? ' · fired at ' + a.firedPrice + ' ' + fmtTime(a.firedAt * 1000) : '');
    const b = document.createElement('button');
    b.type = 'button'; b.textContent = '×'; b.setAttribute('aria-label', 'remove alert ' + a.sym + ' ' + a.op + ' ' + a.price);
    b.onclick = () => { state.alerts = state.alerts.filter((x) => x !== a); saveAlerts(); };
    li.append(s, b);
    ul.appendChild(li);
  }
}

function markAlerted() {
  for (const [sym, r] of rows) r.name.classList.toggle('alerted', alertsBySym.has(sym));
}

function prefillAlert(sym) {
  const q = state.quotes.get(sym);
  $('alert-sym').value = sym;
  $('alert-price').value = q && q.last ? q.last : '';
  $('alert-price').focus();
  $('alert-price').select();
}

function addAlert() {
  const sym = $('alert-sym').value.trim().toUpperCase();
  const price = $('alert-price').value.trim();
  if (!state.universe.has(sym)) { flashInput($('alert-sym'), 'unknown symbol ' + sym); return false; }
  if (!/^\d+(\.\d+)?$/.test(price) || Dec.sign(price) <= 0) { flashInput($('alert-price'), 'a positive price, e.g. 189.50'); return false; }
  state.alerts.push({ id: Date.now() + Math.random(), sym, op: $('alert-op').value, price, fired: false });
  saveAlerts();
  return true;
}

// ---------- connection ----------
const conn = {
  status: 'connecting',
  es: null, ws: null, timer: null, countdown: null, backoff: 500, cursor: '', lastEpoch: '', resynced: false,
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
  // The SSE stream is read with fetch and parsed here, not with
  // EventSource: the node writes a whole interval's ticks at once, and
  // EventSource dispatched one DOM event per tick (with 200 symbols at
  // 100 ms, ~2,000 events a second: the largest part of the page's main
  // thread, and a long task whenever a few writes were read together).
  // Reconnecting was already the page's (retry, cursor), as with EventSource.
  openSSE() {
    const q = new URLSearchParams({ symbols: state.symbols.join(','), interval: state.interval });
    if (this.cursor) q.set('lastEventId', this.cursor);
    const ctl = new AbortController();
    const es = { close: () => ctl.abort() };
    this.es = es;
    const on = (type, data, id) => {
      if (this.es !== es) return;
      switch (type) {
        case 'tick': if (id) this.cursor = id; applyTick(JSON.parse(data)); break;
        case 'hello': setNode(JSON.parse(data).node); break;
        case 'ready': this.cursor = id || this.cursor; this.epoch(this.cursor); this.up(); break;
        case 'resync': this.resynced = true; resync(); break;
        case 'lagging': setStatus('live', liveText() + ' · lagging'); break;
        case 'goaway': this.retry(200 + Math.random() * 800); break;
      }
    };
    (async () => {
      const r = await fetch('stream?' + q, { signal: ctl.signal, cache: 'no-store', headers: { Accept: 'text/event-stream', ...AUTH.headers } });
      if (!r.ok || !r.body) throw new Error('stream: HTTP ' + r.status);
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      const parse = sseParser(on);
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        parse(value);
      }
    })().catch(() => {}).finally(() => { if (this.es === es) this.retry(); }); // ended or failed: reconnect
  },
  openWS() {
    const ws = new WebSocket(location.href.replace(/^http/, 'ws').replace(/[#?].*$/, '').replace(/[^/]*$/, '') + 'ws' + (TOKEN ? '?access_token=' + encodeURIComponent(TOKEN) : ''));
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ op: 'subscribe', symbols: state.symbols, interval: state.interval }));
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      switch (m.type) {
        case 'hello': setNode(m.node); break;
        case 'tick': Array.isArray(m.data) ? m.data.forEach(applyTick) : applyTick(m.data); break;
        case 'ready': this.epoch(m.cursor); this.up(); break;
        case 'resync': this.resynced = true; resync(); break;
        case 'lagging': setStatus('live', liveText() + ' · lagging'); break;
        case 'error': console.warn('tickstream:', m.error); break;
      }
    };
    ws.onclose = () => { if (this.ws === ws) this.retry(); };
  },
  up() { this.backoff = 500; setStatus('live', liveText()); },
  // epoch notes the cursor's epoch at ready: a new one (the node lost its
  // history) that came without a resync event resets the panels too.
  epoch(cursor) {
    const e = epochOf(cursor);
    if (this.lastEpoch && e && e !== this.lastEpoch && !this.resynced) resync();
    if (e) this.lastEpoch = e;
    this.resynced = false;
  },
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

// sseParser returns a function that takes the stream's text as it comes
// (any chunks) and calls on(type, data, id) for each complete event; id
// is the last id: seen, as EventSource's lastEventId. Comments (the
// heartbeat) and retry: are skipped.
function sseParser(on) {
  let buf = '', type = '', data = '', has = false, id = '';
  return (chunk) => {
    buf = buf ? buf + chunk : chunk;
    let start = 0, nl;
    while ((nl = buf.indexOf('\n', start)) >= 0) {
      let end = nl;
      if (end > start && buf.charCodeAt(end - 1) === 13) end--; // CRLF
      if (end === start) { // a blank line ends the event
        if (has) on(type || 'message', data, id);
        type = ''; data = ''; has = false;
      } else if (buf.charCodeAt(start) !== 58) { // ':' starts a comment
        let colon = buf.indexOf(':', start), field, value;
        if (colon < 0 || colon > end) { field = buf.slice(start, end); value = ''; } else {
          field = buf.slice(start, colon);
          if (buf.charCodeAt(++colon) === 32) colon++;
          value = buf.slice(colon, end);
        }
        if (field === 'data') { data = has ? data + '\n' + value : value; has = true; } else if (field === 'event') type = value;
        else if (field === 'id') id = value;
      }
      start = nl + 1;
    }
    buf = start < buf.length ? buf.slice(start) : '';
  };
}

function liveText() { return 'live · ' + (state.transport === 'ws' ? 'WebSocket' : 'SSE'); }
function setNode(n) { stats.node = n; $('node').textContent = n; }
function setStatus(s, text) {
  const changed = conn.status !== s;
  conn.status = s; stats.status = s;
  $('conn').className = 'conn ' + s;
  $('conn-text').textContent = text;
  if (changed) { checkStale(); markPanels(); } // a dropped connection dims every row and panel at once
}

// ---------- controls ----------
function initControls() {
  $('transport').value = state.transport;
  $('interval').value = state.interval;
  $('barsize').value = state.tf;
  $('charttype').value = state.chartType;
  $('utc').checked = TZ === 0;
  $('tz').textContent = tzLabel();
  $('utc').onchange = (e) => {
    TZ = e.target.checked ? 0 : LOCAL_TZ; store.set('utc', e.target.checked);
    $('tz').textContent = tzLabel();
    for (const r of rows.values()) { r.sec = -1; state.dirty.add(r.sym); }
    tape.rows.forEach((tr) => { tr.dataset.seq = ''; }); tape.dirty = true;
    resetSeries(); schedule();
  };
  $('alert-sound').checked = state.sound;
  $('transport').onchange = (e) => { state.transport = e.target.value; store.set('transport', state.transport); conn.cursor = ''; conn.open(); };
  $('interval').onchange = (e) => { state.interval = e.target.value; store.set('interval', state.interval); conn.setInterval(); };
  $('barsize').onchange = (e) => { state.tf = e.target.value; store.set('tf', state.tf); resetSeries(); };
  $('charttype').onchange = (e) => { state.chartType = e.target.value; store.set('chartType', state.chartType); resetSeries(); };
  $('add').onsubmit = (e) => { e.preventDefault(); if (addSymbol($('search').value)) $('search').value = ''; };
  $('alert-form').onsubmit = (e) => { e.preventDefault(); if (addAlert()) $('alert-price').value = ''; };
  $('alert-sound').onchange = (e) => { state.sound = e.target.checked; store.set('sound', state.sound); if (state.sound) beep(); };
  for (const th of document.querySelectorAll('#heads th[data-key]')) th.querySelector('button').onclick = () => setSort(th.dataset.key);
  document.addEventListener('keydown', (e) => {
    if (e.key === '/' && !['INPUT', 'SELECT'].includes(document.activeElement.tagName)) { e.preventDefault(); $('search').focus(); }
  });
  showSort();
  indexAlerts();
  renderAlerts();
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

window.tickstream = { state, conn, addSymbol, removeSymbol, select, setSort, chartState, tape, stats };
main();
