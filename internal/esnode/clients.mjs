// Opens EventSources with the npm eventsource package (v3: it follows the
// HTML standard, so any non-200 answer closes the source for good) and
// prints one JSON line per event on stdout. Run by internal/esnode:
//   node clients.mjs '[{"name":"a","url":"http://127.0.0.1:8080/stream?symbols=AAPL"}]'
// It exits when its standard input closes.
import { EventSource } from 'eventsource';

const clients = JSON.parse(process.argv[2]);
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

for (const c of clients) {
  const es = new EventSource(c.url);
  es.addEventListener('open', () => out({ c: c.name, t: 'open', rs: es.readyState }));
  for (const t of ['hello', 'ready', 'tick', 'goaway', 'resync', 'lagging']) {
    es.addEventListener(t, (e) => out({ c: c.name, t, d: e.data, id: e.lastEventId, rs: es.readyState }));
  }
  es.addEventListener('error', (e) => out({ c: c.name, t: 'error', rs: es.readyState, code: e.code ?? 0, msg: e.message ?? '' }));
}
out({ c: '', t: 'started' });
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
