// Unit tests of logic.js with node's built-in runner: `node --test` in this
// folder (no componentize, no host).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  decodeEntities,
  defaultSymbol,
  extractHosts,
  isListed,
  locallyBlocked,
  normalizeHost,
  parseConfig,
  PATTERNS,
  planLookups,
  queryName,
  registeredDomain,
} from './logic.js';

test('config defaults', () => {
  for (const text of ['', '{}']) {
    const c = parseConfig(text);
    assert.deepEqual(c.zones, []);
    assert.equal(c.max_lookups, 10);
    assert.equal(c.blocked_action, 'reject');
    assert.deepEqual(c.skip_domains, ['w3.org']);
  }
});

test('config zones', () => {
  const c = parseConfig(JSON.stringify({
    zones: ['multi.surbl.org.', { zone: 'Multi.URIBL.com', weight: 5.5, action: 'reject', symbol: 'URIBL_BLACK', mask: 2, ignore: ['127.0.0.1', '127.0.0.255'] }],
    max_lookups: 50,
    blocked_domains: ['Bad.Example.', ''],
    blocked_action: 'score',
    blocked_weight: 7,
  }));
  assert.deepEqual(c.zones[0], { zone: 'multi.surbl.org', weight: 4, action: 'score', symbol: 'URIBL_MULTI_SURBL_ORG', mask: null, ignore: ['127.0.0.1'] });
  assert.deepEqual(c.zones[1], { zone: 'multi.uribl.com', weight: 5.5, action: 'reject', symbol: 'URIBL_BLACK', mask: 2, ignore: ['127.0.0.1', '127.0.0.255'] });
  assert.equal(c.max_lookups, 20, 'capped at the host quota');
  assert.deepEqual(c.blocked_domains, ['bad.example']);
  assert.equal(c.blocked_action, 'score');
  assert.equal(c.blocked_weight, 7);
});

test('bad configs name the key', () => {
  const cases = {
    '[': 'not JSON',
    '[]': 'not an object',
    '{"zone": []}': "unknown key 'zone'",
    '{"zones": {}}': "'zones'",
    '{"zones": [{"zone": "nodots"}]}': 'zones[0].zone',
    '{"zones": [{"zone": "a.test", "action": "drop"}]}': 'zones[0].action',
    '{"zones": [{"zone": "a.test", "weight": "5"}]}': "'weight'",
    '{"zones": [{"zone": "a.test", "mask": 0}]}': "'mask'",
    '{"zones": [{"zone": "a.test", "symbol": "bad symbol"}]}': 'symbol',
    '{"zones": [{"zone": "a.test", "colour": 1}]}': "unknown key 'colour'",
    '{"max_lookups": -1}': 'max_lookups',
    '{"max_lookups": 2.5}': 'max_lookups',
    '{"blocked_domains": "x.test"}': 'blocked_domains',
    '{"blocked_action": "drop"}': 'blocked_action',
  };
  for (const [text, needle] of Object.entries(cases)) {
    assert.throws(() => parseConfig(text), (e) => e.message.startsWith('invalid plugin config') && e.message.includes(needle), text);
  }
});

test('default symbol', () => {
  assert.equal(defaultSymbol('multi.uribl.com'), 'URIBL_MULTI_URIBL_COM');
  assert.equal(defaultSymbol('dbl-x.test'), 'URIBL_DBL_X_TEST');
});

test('host normalization', () => {
  assert.equal(normalizeHost('WWW.Bad-Domain.TEST'), 'www.bad-domain.test');
  assert.equal(normalizeHost('www.bad-domain.test.'), 'www.bad-domain.test');
  assert.equal(normalizeHost('paypal.com@evil.test:8080'), 'evil.test', 'userinfo and port dropped');
  assert.equal(normalizeHost('evil.test).'), 'evil.test', 'trailing punctuation of prose');
  assert.equal(normalizeHost('%65vil.test'), 'evil.test', 'percent-encoded host');
  assert.equal(normalizeHost('0x7f.1'), '127.0.0.1', 'hex/short IPv4 forms');
  assert.equal(normalizeHost('3221225985'), '192.0.2.1', 'decimal IPv4 form');
  assert.equal(normalizeHost('bücher.example'), 'xn--bcher-kva.example', 'IDN to punycode');
  assert.equal(normalizeHost('localhost'), null);
  assert.equal(normalizeHost('[2001:db8::1]'), null);
  assert.equal(normalizeHost('a..b.test'), null);
  assert.equal(normalizeHost('file.exe'), 'file.exe', 'a host-shaped name is a host');
  assert.equal(normalizeHost('version.1'), null, 'numeric TLD');
});

test('entities', () => {
  assert.equal(decodeEntities('http&#58;&#x2F;&#x2f;a.test&sol;?x=1&amp;y=2'), 'http://a.test/?x=1&y=2');
  assert.equal(decodeEntities('&bogus; &#0;'), '&bogus; &#0;');
});

test('hosts from plain text', () => {
  const text = 'See http://www.bad-domain.test/x and https://Shop.Example.co.uk:443/p?q=1,\n'
    + 'or www.other.test/path. Mail me: someone@mail.test. Again http://www.bad-domain.test/y\n'
    + 'Dots... and version 1.2.3 and file.txt are not links; hxxp://no.test either; ftp://files.test/';
  assert.deepEqual(extractHosts(text, false), ['www.bad-domain.test', 'shop.example.co.uk', 'www.other.test', 'files.test']);
});

test('hosts from HTML', () => {
  const html = '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0//EN" "http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">'
    + '<a href="http://click.bad-domain.test/x">bank</a> <A HREF=\'https://Quoted.test\'>q</A>'
    + '<a href=http://unquoted.test/a>u</a> <a href="mailto:x@mail.test">m</a> <a href="/relative">r</a>'
    + '<a href="h&#116;tp&#58;//entity.test/">e</a> <a href="//proto-relative.test/">p</a>'
    + '<p>visit www.textual.test today</p> <img src="http://img.test/1.png">';
  assert.deepEqual(extractHosts(html, true), [
    'click.bad-domain.test', 'quoted.test', 'unquoted.test', 'entity.test', 'proto-relative.test',
    'www.w3.org', 'www.textual.test', 'img.test',
  ]);
});

test('registered domains', () => {
  assert.equal(registeredDomain('www.bad-domain.test'), 'bad-domain.test');
  assert.equal(registeredDomain('a.b.c.example.com'), 'example.com');
  assert.equal(registeredDomain('example.com'), 'example.com');
  assert.equal(registeredDomain('shop.example.co.uk'), 'example.co.uk');
  assert.equal(registeredDomain('example.co.uk'), 'example.co.uk');
  assert.equal(registeredDomain('x.y.example.com.au'), 'example.com.au');
  assert.equal(registeredDomain('192.0.2.1'), '192.0.2.1');
});

test('query names', () => {
  assert.equal(queryName('bad-domain.test', 'uribl.test'), 'bad-domain.test.uribl.test');
  assert.equal(queryName('192.0.2.99', 'uribl.test'), '99.2.0.192.uribl.test');
});

test('lookup plan: dedup, skip, local list, cap, domain-major order', () => {
  const cfg = parseConfig(JSON.stringify({
    zones: ['one.test', 'two.test'],
    blocked_domains: ['blocked.test'],
    max_lookups: 5,
  }));
  const hosts = ['www.a.test', 'mail.a.test', 'www.w3.org', 'x.blocked.test', 'b.test', '192.0.2.7', 'c.test'];
  const { plan, skipped } = planLookups(hosts, cfg);
  assert.deepEqual(plan.map((p) => p.name), [
    'a.test.one.test', 'a.test.two.test', 'b.test.one.test', 'b.test.two.test', '7.2.0.192.one.test',
  ]);
  assert.equal(skipped, true);
  assert.equal(planLookups(['a.test'], cfg).skipped, false);
  assert.deepEqual(planLookups(['a.test'], parseConfig('{"max_lookups": 0, "zones": ["z.test"]}')).plan, []);
  assert.deepEqual(planLookups(['a.test'], parseConfig('{}')).plan, [], 'no zones, no look-ups');
});

test('local blocklist matches the domain and its subdomains only', () => {
  const cfg = parseConfig('{"blocked_domains": ["bad.test"]}');
  assert.equal(locallyBlocked('bad.test', cfg), 'bad.test');
  assert.equal(locallyBlocked('www.bad.test', cfg), 'bad.test');
  assert.equal(locallyBlocked('notbad.test', cfg), null);
});

test('answers: only 127/8, minus refusals and error codes; masks', () => {
  const [plain] = parseConfig('{"zones": ["z.test"]}').zones;
  assert.equal(isListed(['127.0.0.2'], plain), true);
  assert.equal(isListed([], plain), false, 'NXDOMAIN');
  assert.equal(isListed(['127.0.0.1'], plain), false, 'URIBL: query refused');
  assert.equal(isListed(['127.255.255.254'], plain), false, 'Spamhaus: error code');
  assert.equal(isListed(['198.51.100.1'], plain), false, 'NXDOMAIN rewritten by a resolver');
  const [masked] = parseConfig('{"zones": [{"zone": "multi.test", "mask": 6}]}').zones;
  assert.equal(isListed(['127.0.0.2'], masked), true);
  assert.equal(isListed(['127.0.0.8'], masked), false, 'a list this zone entry does not use');
  assert.equal(isListed(['127.0.0.8', '127.0.0.4'], masked), true);
});

// extractHosts and decodeEntities try their patterns only where a match can
// begin (found with indexOf), which is much cheaper in the plugin's
// interpreter than a global regex over the whole text. The reference below
// is the plain global scan of the same patterns, which they must equal on
// every input.
function referenceDecode(s) {
  return s.replace(PATTERNS.entity, (m, e) => {
    if (e[0] === '#') {
      const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return code > 0 && code < 0x110000 ? String.fromCodePoint(code) : m;
    }
    return { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", colon: ':', sol: '/', period: '.', nbsp: ' ' }[e.toLowerCase()] ?? m;
  });
}

function referenceHosts(text, isHtml) {
  const found = [];
  const add = (authority) => {
    const h = normalizeHost(authority);
    if (h !== null && !found.includes(h)) found.push(h);
  };
  let t = text;
  if (isHtml) {
    t = referenceDecode(text);
    for (const m of t.matchAll(PATTERNS.href)) {
      const v = (m[1] ?? m[2] ?? m[3] ?? '').trim();
      const u = PATTERNS.urlInAttr.exec(v);
      if (u) add(u[1]);
    }
  }
  for (const m of t.matchAll(PATTERNS.bareUrl)) add(m[1]);
  return found;
}

function assertSameAsReference(text) {
  for (const isHtml of [false, true]) {
    assert.deepEqual(extractHosts(text, isHtml), referenceHosts(text, isHtml), `${isHtml ? 'html' : 'plain'}: ${JSON.stringify(text)}`);
  }
  assert.equal(decodeEntities(text), referenceDecode(text), JSON.stringify(text));
}

// The benchmark body: CRLF lines of 78 characters, no links.
const FOX = 'The quick brown fox jumps over the lazy dog. 0123456789 PACK MY BOX WITH FIVE DOZEN JUGS! ';
function foxText(bytes) {
  const stream = FOX.repeat(Math.ceil(bytes / FOX.length) + 1);
  const lines = [];
  for (let i = 0; i * 80 < bytes; i++) {
    const line = stream.slice((i * 78) % FOX.length, ((i * 78) % FOX.length) + 78);
    lines.push(i % 16 === 0 ? `.${line.slice(1)}` : line);
  }
  return `${lines.join('\r\n')}\r\n`;
}

test('targeted scan equals the global scan: hand-picked cases', () => {
  const cases = [
    '', 'no links here', foxText(2048), foxText(100 * 1024),
    'http://a.test', 'https://a.test', 'ftp://a.test', 'HTTPS://A.TEST', 'hTtP:////a.test',
    'www.a.test', 'WWW.A.TEST', 'Www1.a.test', 'www123.a.test', 'www1234.a.test', 'wwww.a.test', 'awww.a.test',
    '.www.a.test', 'xhttp://a.test', '_http://a.test', 'hxxp://a.test', 'ttp://a.test', 'tp://a.test', '://a.test',
    'http://a.testhttp://b.test', 'www.a.testwww.b.test', 'http://www.a.test', 'https://http://b.test',
    'http://http://http://c.test', 'see http://a.test/x,https://b.test?y#z www.c.test.', 'http://a.test/www.b.test',
    'http://paypal.com@evil.test:8080/', 'http://0x7f.1/ and http://3221225985/', 'http://bücher.example/',
    'http://[2001:db8::1]/', 'http://%65vil.test/', 'İ http://a.test www.b.test', 'http://İ.test', 'K www.k.test',
    '<a href="http://a.test">x</a>', "<A HREF='https://b.test'>", '<a href=http://c.test/x>', 'href = " //d.test/"',
    'href="mailto:x@e.test"', 'href="/relative"', 'hrefhref="http://f.test"', 'xhref="http://g.test"',
    '<a href="h&#116;tp&#58;//entity.test/">', 'http&#58;&#x2F;&#x2f;a.test&sol;', '&amp;&amp;&#0;&bogus;&#x110000;',
    '&&&#58;//a.test', 'w&#119;w.a.test', 'href&#61;"http://h.test"', '&constructor;', '&#x1F600;www.emoji.test',
    `${foxText(4096)}http://late.test/`, `http://early.test/${foxText(4096)}`, `${foxText(3000)}<a href="http://mid.test">${foxText(3000)}`,
    // Crowded with false candidates: the global scan takes over mid-text.
    `${'w'.repeat(5000)} www.a.test`, `${'://'.repeat(3000)}http://b.test`, `${'a://'.repeat(2000)} https://c.test www.d.test`,
    `${'href'.repeat(2000)}<a href="http://e.test">`, `${'&'.repeat(5000)}&#58;h&#116;tp&#58;//f.test`,
    `www.g.test ${'ww '.repeat(3000)} http://h.test ${'xwww.'.repeat(500)} ftp://i.test`,
    `${'&x'.repeat(3000)}<a href=http://j.test>${'href'.repeat(500)}<a href="//k.test">`,
  ];
  for (const c of cases) assertSameAsReference(c);
});

test('targeted scan equals the global scan: random texts', () => {
  // Fragments around the anchors (schemes, "www", "href", entities) and
  // the characters that end or break a match; mulberry32, fixed seed.
  const pieces = [
    'http://', 'https://', 'HTTP://', 'hTTpS:///', 'ftp://', 'FTP:/', 'ttp://', 'xhttp://', 'hxxp://', '://', ':/', ':',
    'www.', 'WWW.', 'www1.', 'www123.', 'www1234.', 'wwww.', 'Www', 'ww', 'w', 'W', 'href=', 'HREF = "', "href='", 'href',
    'hre', 'f', '=', '"', "'", '<a ', '>', '<', '&#58;', '&#x2f;', '&#X2F', '&sol;', '&colon;', '&amp;', '&', '&#0;', '&lt;',
    '&#104;', 'h&#116;tp', '@', 'user@', ':8080', 'example', '.test', 'a.b', '.co.uk', '0x7f.1', '3221225985', '%65',
    'bücher', 'İ', '\u212A', 'ſ', ' ', '\r\n', '\t', '.', '..', ',', ')', '/', '//', '?', '#', '\\', '[', ']', '_', '-',
    '1', 'a', 'z', 'x.test', 'mail.test',
  ];
  let seed = 0x5eed;
  const random = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let r = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
  for (let i = 0; i < 5000; i++) {
    let s = '';
    const n = Math.floor(random() * 40);
    for (let j = 0; j < n; j++) s += pieces[Math.floor(random() * pieces.length)];
    assertSameAsReference(s);
  }
  // Long texts crowded with anchors, so that the global scan takes over
  // (after a number of failed tries that grows with the length).
  const crowd = ['w', 'www', 'ww.', '://', 'a://', 'href', 'hre', '&', '&x', '&#', ' ', '.', 'x.test', 'http://', 'www.', '&#58;', "href='"];
  for (let i = 0; i < 200; i++) {
    let s = '';
    const n = 50 + Math.floor(random() * 3000);
    for (let j = 0; j < n; j++) s += crowd[Math.floor(random() * crowd.length)];
    assertSameAsReference(s);
  }
});
