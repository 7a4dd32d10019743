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
