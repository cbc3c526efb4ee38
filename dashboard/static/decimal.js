// Exact decimal arithmetic on the wire's price strings, with BigInt: the
// change since the first price is computed without float rounding.
'use strict';
const Dec = {
  // parse "189.42" → {n: 18942n, s: 2}
  parse(str) {
    const neg = str.startsWith('-');
    const body = neg ? str.slice(1) : str;
    const i = body.indexOf('.');
    const s = i < 0 ? 0 : body.length - i - 1;
    const n = BigInt(i < 0 ? body : body.slice(0, i) + body.slice(i + 1));
    return { n: neg ? -n : n, s };
  },
  align(a, b) {
    const s = Math.max(a.s, b.s);
    return [a.n * 10n ** BigInt(s - a.s), b.n * 10n ** BigInt(s - b.s), s];
  },
  // a − b, exact, as a string with the larger scale of the two
  sub(a, b) {
    const [x, y, s] = Dec.align(Dec.parse(a), Dec.parse(b));
    return Dec.format(x - y, s);
  },
  format(n, s) {
    const neg = n < 0n;
    let t = (neg ? -n : n).toString();
    if (s > 0) {
      t = t.padStart(s + 1, '0');
      t = t.slice(0, t.length - s) + '.' + t.slice(t.length - s);
    }
    return (neg ? '-' : '') + t;
  },
  sign(str) { return str.startsWith('-') ? -1 : /[1-9]/.test(str) ? 1 : 0; },
  // compare two price strings: -1, 0, 1
  cmp(a, b) {
    const [x, y] = Dec.align(Dec.parse(a), Dec.parse(b));
    return x < y ? -1 : x > y ? 1 : 0;
  },
};
window.Dec = Dec;
