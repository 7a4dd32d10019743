// Pure logic of the js-uribl plugin: config, URL host extraction, the
// registered-domain reduction, the look-up plan and the reading of DNS
// answers. No 'poczta:plugin/...' imports, so node runs it directly:
//   cd plugins/js/uribl && node --test
// (logic.test.js). uribl.js wires it to the host.

/** The host refuses more than 20 DNS look-ups per hook call (quota). */
export const HOST_DNS_QUOTA = 20;

/**
 * Common public suffixes with two labels, so that `shop.example.co.uk`
 * reduces to `example.co.uk` and not to `co.uk`. A small built-in list,
 * not the Public Suffix List: a domain under a suffix missing here is
 * reduced to its last two labels, which at worst looks up the suffix
 * itself (never listed) and misses the listing.
 */
export const TWO_LEVEL_SUFFIXES = new Set([
  'co.uk', 'org.uk', 'me.uk', 'ltd.uk', 'plc.uk', 'net.uk', 'ac.uk', 'gov.uk', 'sch.uk',
  'com.au', 'net.au', 'org.au', 'edu.au', 'gov.au', 'asn.au', 'id.au',
  'co.nz', 'net.nz', 'org.nz', 'ac.nz', 'govt.nz',
  'co.jp', 'ne.jp', 'or.jp', 'ac.jp', 'go.jp',
  'co.kr', 'or.kr', 'ac.kr',
  'com.br', 'net.br', 'org.br', 'gov.br',
  'com.cn', 'net.cn', 'org.cn', 'gov.cn', 'edu.cn',
  'com.tw', 'net.tw', 'org.tw', 'edu.tw',
  'com.hk', 'net.hk', 'org.hk', 'edu.hk',
  'com.sg', 'org.sg', 'edu.sg', 'com.my', 'com.ph', 'com.vn', 'co.th', 'in.th',
  'co.in', 'net.in', 'org.in', 'firm.in', 'gen.in', 'ind.in', 'ac.in',
  'co.id', 'or.id', 'ac.id', 'co.il', 'org.il', 'ac.il',
  'com.mx', 'org.mx', 'gob.mx', 'com.ar', 'com.co', 'com.pe', 'com.ve',
  'com.tr', 'net.tr', 'org.tr', 'com.pl', 'net.pl', 'org.pl',
  'com.ua', 'net.ua', 'org.ua', 'co.za', 'org.za', 'gov.za',
  'com.eg', 'com.sa', 'com.ng', 'co.ke', 'com.pk',
]);

export const DEFAULTS = Object.freeze({
  zones: [],
  max_lookups: 10,
  max_text_bytes: 1 << 20,
  blocked_domains: [],
  blocked_action: 'reject',
  blocked_weight: 10.0,
  // Appears in the DOCTYPE/xmlns of nearly every HTML mail; never listed.
  skip_domains: ['w3.org'],
});

const ZONE_KEYS = new Set(['zone', 'weight', 'action', 'symbol', 'mask', 'ignore']);
const TOP_KEYS = new Set(Object.keys(DEFAULTS));
const ACTIONS = new Set(['score', 'reject']);

function fail(what) {
  throw new Error(`invalid plugin config: ${what}`);
}

function strList(raw, key) {
  const v = raw[key];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) fail(`'${key}' must be a list of strings`);
  return v.map((x) => x.trim().toLowerCase().replace(/^\.+|\.+$/g, '')).filter((x) => x !== '');
}

function number(raw, key, { min = -Infinity, integer = false } = {}) {
  const v = raw[key];
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || (integer && !Number.isInteger(v))) {
    fail(`'${key}' must be ${integer ? 'an integer' : 'a number'}${min > -Infinity ? ` >= ${min}` : ''}`);
  }
  return v;
}

/** "multi.uribl.com" → "URIBL_MULTI_URIBL_COM" */
export function defaultSymbol(zone) {
  return `URIBL_${zone.toUpperCase().replace(/[^A-Z0-9]+/g, '_').replace(/^_+|_+$/g, '')}`;
}

function parseZone(z, i) {
  if (typeof z === 'string') z = { zone: z };
  if (z === null || typeof z !== 'object' || Array.isArray(z)) fail(`zones[${i}] must be a table or a zone name`);
  for (const k of Object.keys(z)) if (!ZONE_KEYS.has(k)) fail(`zones[${i}]: unknown key '${k}'`);
  if (typeof z.zone !== 'string' || !/^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/i.test(z.zone.replace(/\.$/, ''))) {
    fail(`zones[${i}].zone must be a DNS name`);
  }
  const zone = z.zone.toLowerCase().replace(/\.$/, '');
  const out = { zone, weight: 4.0, action: 'score', symbol: defaultSymbol(zone), mask: null, ignore: ['127.0.0.1'] };
  if ('weight' in z) out.weight = number(z, 'weight');
  if ('action' in z) {
    if (!ACTIONS.has(z.action)) fail(`zones[${i}].action must be "score" or "reject"`);
    out.action = z.action;
  }
  if ('symbol' in z) {
    if (typeof z.symbol !== 'string' || !/^[A-Za-z0-9_]{1,64}$/.test(z.symbol)) fail(`zones[${i}].symbol must be 1-64 of A-Z 0-9 _`);
    out.symbol = z.symbol;
  }
  if ('mask' in z) out.mask = number(z, 'mask', { min: 1, integer: true });
  if ('ignore' in z) out.ignore = strList(z, 'ignore');
  return out;
}

/**
 * The plugin config from its JSON text ("{}" gives the defaults). Throws an
 * Error naming the offending key: a typo shows in the log instead of
 * silently filtering with defaults.
 */
export function parseConfig(text) {
  let raw;
  try {
    raw = JSON.parse(text || '{}');
  } catch (e) {
    fail(`not JSON (${e.message})`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) fail('not an object');
  for (const k of Object.keys(raw)) if (!TOP_KEYS.has(k)) fail(`unknown key '${k}'`);
  const cfg = { ...DEFAULTS };
  if ('zones' in raw) {
    if (!Array.isArray(raw.zones)) fail(`'zones' must be a list`);
    cfg.zones = raw.zones.map(parseZone);
  }
  if ('max_lookups' in raw) cfg.max_lookups = number(raw, 'max_lookups', { min: 0, integer: true });
  // More would only end in `quota` errors from the host.
  cfg.max_lookups = Math.min(cfg.max_lookups, HOST_DNS_QUOTA);
  if ('max_text_bytes' in raw) cfg.max_text_bytes = number(raw, 'max_text_bytes', { min: 0, integer: true });
  for (const k of ['blocked_domains', 'skip_domains']) if (k in raw) cfg[k] = strList(raw, k);
  if ('blocked_action' in raw) {
    if (!ACTIONS.has(raw.blocked_action)) fail(`'blocked_action' must be "score" or "reject"`);
    cfg.blocked_action = raw.blocked_action;
  }
  if ('blocked_weight' in raw) cfg.blocked_weight = number(raw, 'blocked_weight');
  return cfg;
}

const NAMED_ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", colon: ':', sol: '/', period: '.', nbsp: ' ' };

// Sticky: tried only where an '&' is (indexOf is native and fast even
// without a JIT; an interpreted regex scanning every character of a long
// part is what the hook's time went to). The global one takes over when
// the '&'s are mostly not references (see missBudget).
const ENTITY_AT = /&(#x[0-9a-f]+|#[0-9]+|[a-z]+);?/iy;
const ENTITY = new RegExp(ENTITY_AT.source, 'gi');

function decodeEntity(m, e) {
  if (e[0] === '#') {
    const code = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
    return code > 0 && code < 0x110000 ? String.fromCodePoint(code) : m;
  }
  return NAMED_ENTITIES[e.toLowerCase()] ?? m;
}

/**
 * How many tries of a sticky pattern that fail a scan of `text` may make
 * before the global pattern scans the rest. In the plugin a failed try
 * costs about what the regex engine spends scanning 10 to 15 characters,
 * so with about one per 64 characters a text crowded with false
 * candidates ("wwwwww…", "://://…") costs at most a little more than one
 * global scan, and a normal text no scan at all.
 */
function missBudget(text) {
  return 16 + (text.length >> 6);
}

/**
 * Undoes the HTML character references a link obfuscator uses. The same
 * as a global replace of the reference pattern: every match starts with
 * '&', so only those positions are tried.
 */
export function decodeEntities(s) {
  let i = s.indexOf('&');
  if (i < 0) return s;
  let out = '';
  let copied = 0;
  let misses = missBudget(s);
  while (i >= 0) {
    ENTITY_AT.lastIndex = i;
    const m = ENTITY_AT.exec(s);
    if (m === null) {
      // No reference starts between `copied` and here, and the pattern
      // looks at nothing before its '&': the rest alone gives the same.
      if (--misses < 0) return out + s.slice(copied).replace(ENTITY, decodeEntity);
      i = s.indexOf('&', i + 1);
      continue;
    }
    out += s.slice(copied, i) + decodeEntity(m[0], m[1]);
    copied = ENTITY_AT.lastIndex;
    i = s.indexOf('&', copied);
  }
  return out + s.slice(copied);
}

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** Whether `host` is a dotted-quad IPv4 address. */
export function isIPv4(host) {
  const m = IPV4.exec(host);
  return m !== null && m.slice(1).every((o) => Number(o) <= 255);
}

/**
 * The host of a URL's authority ("user@Host.Example:8080"), normalized:
 * lower-case, punycode for IDNs, IPv4 in dotted-quad form (the WHATWG URL
 * parser turns `0x7f.1` or `3221225985` into dotted quads, a classic
 * blocklist evasion). Null when it is not a plausible internet host.
 */
export function normalizeHost(authority) {
  let a = authority;
  // The part before the last '@' is userinfo ("http://paypal.com@evil.test/").
  const at = a.lastIndexOf('@');
  if (at >= 0) a = a.slice(at + 1);
  a = a.replace(/[.,;:!?)\]}'"*]+$/, '');
  if (a.startsWith('[')) return null; // IPv6 literal: URI blocklists list no IPv6.
  a = a.replace(/:\d*$/, '');
  try {
    a = decodeURIComponent(a);
  } catch {
    return null;
  }
  let host;
  try {
    host = new URL(`http://${a}/`).hostname;
  } catch {
    return null;
  }
  host = host.toLowerCase().replace(/\.+$/, '');
  if (isIPv4(host)) return host;
  const labels = host.split('.');
  if (labels.length < 2) return null;
  if (!labels.every((l) => /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/.test(l))) return null;
  // The top-level label is letters (or an IDN TLD in punycode).
  if (!/^(?:[a-z]{2,63}|xn--[a-z0-9-]+)$/.test(labels[labels.length - 1])) return null;
  return host;
}

// scheme://authority or a bare "www." host; the authority ends at the
// first / ? # \ or anything that cannot be in a host.
const BARE_URL = /\b(?:(?:https?|ftp):\/\/+|(?=www\d{0,3}\.))([^\s/?#\\<>"'`(){}|^[\]]+)/gi;
const HREF = /\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))/gi;
const URL_IN_ATTR = /^\s*(?:(?:https?|ftp):\/\/+|\/\/)([^/?#\\\s]+)/i;

/** The patterns as global regexes, for the tests' reference scan. */
export const PATTERNS = Object.freeze({
  bareUrl: BARE_URL,
  href: HREF,
  urlInAttr: URL_IN_ATTR,
  entity: new RegExp(ENTITY.source, 'gi'),
});

// The same patterns, sticky: extractHosts tries them only at the few
// positions where a match can begin, found with indexOf. In the plugin the
// regex engine is an interpreter (no JIT), and a global regex tries every
// position of the text: for a 100 KB part with no link at all that was
// nearly all of the hook's time. The global copies take over when the
// candidates are mostly false (see missBudget); they are copies so that
// BARE_URL's and HREF's lastIndex stays 0 for matchAll.
const BARE_URL_AT = new RegExp(BARE_URL.source, 'iy');
const HREF_AT = new RegExp(HREF.source, 'iy');
const BARE_URL_G = new RegExp(BARE_URL.source, 'gi');
const HREF_G = new RegExp(HREF.source, 'gi');

// The schemes BARE_URL accepts: "ftp" to "https".
const MIN_SCHEME = 3;
const MAX_SCHEME = 5;

/**
 * Calls `onMatch` with every match of a pattern in `t`, in order and not
 * overlapping, exactly as a global scan (matchAll) would find them, given
 * the pattern `sticky` and `global`, and `next(pos)`: the smallest
 * position >= pos where a match can begin, or -1 when none can. A
 * position `next` returns needs not match; one it skips must not.
 */
function scanAt(t, sticky, global, next, onMatch) {
  let misses = missBudget(t);
  for (let q = next(0); q >= 0; ) {
    sticky.lastIndex = q;
    const m = sticky.exec(t);
    if (m !== null) {
      onMatch(m);
      // Never empty: every pattern here captures one character at least.
      q = next(sticky.lastIndex);
    } else if (--misses >= 0) {
      q = next(q + 1);
    } else {
      // No match begins before q: the global scan from q finds the rest.
      global.lastIndex = q;
      for (let g = global.exec(t); g !== null; g = global.exec(t)) onMatch(g);
      return;
    }
  }
}

/**
 * next() for `needle` (lower case) in `lower`: a match can begin from
 * `maxBack` to `minBack` characters before each occurrence of it. The
 * occurrence found last is remembered, so a whole scan searches the text
 * once, not once per call.
 */
function candidates(lower, needle, maxBack, minBack) {
  let hit = -2; // -2: not searched yet; -1: no more
  return (pos) => {
    if (hit === -1) return -1;
    if (hit - minBack < pos) hit = lower.indexOf(needle, pos + minBack);
    return hit < 0 ? -1 : Math.max(pos, hit - maxBack);
  };
}

/** The smaller of two next() answers (-1: none). */
function either(a, b) {
  return (pos) => {
    const x = a(pos);
    const y = b(pos);
    return x < 0 ? y : y < 0 || x < y ? x : y;
  };
}

/**
 * The hosts of the URLs in one text part, in order of appearance, without
 * duplicates. HTML: every href (quoted or not, entity-encoded or not) and
 * URLs in the text; plain text: URLs with a scheme and bare "www." hosts.
 * The text must already be transfer-decoded (the host's part-text).
 */
export function extractHosts(text, isHtml) {
  const found = [];
  const add = (authority) => {
    const h = normalizeHost(authority);
    if (h !== null && !found.includes(h)) found.push(h);
  };
  const t = isHtml ? decodeEntities(text) : text;
  // The patterns ignore case: their anchors are searched in a lower-cased
  // copy, whose positions are those of `t` unless lower-casing changed the
  // length (only U+0130 does): then the plain global scans.
  const lower = t.toLowerCase();
  if (lower.length !== t.length) {
    if (isHtml) for (const m of t.matchAll(HREF)) hrefHost(m, add);
    for (const m of t.matchAll(BARE_URL)) add(m[1]);
    return found;
  }
  if (isHtml) scanAt(t, HREF_AT, HREF_G, candidates(lower, 'href', 0, 0), (m) => hrefHost(m, add));
  // A BARE_URL match begins with "www", or with the scheme just before "://".
  const bareNext = either(candidates(lower, 'www', 0, 0), candidates(lower, '://', MAX_SCHEME, MIN_SCHEME));
  scanAt(t, BARE_URL_AT, BARE_URL_G, bareNext, (m) => add(m[1]));
  return found;
}

function hrefHost(m, add) {
  const v = (m[1] ?? m[2] ?? m[3] ?? '').trim();
  const u = URL_IN_ATTR.exec(v);
  if (u) add(u[1]);
}

/**
 * What a URI blocklist lists for `host`: its registered domain (the last
 * two labels, or three under a known two-label public suffix); an IPv4
 * address as is.
 */
export function registeredDomain(host) {
  if (isIPv4(host)) return host;
  const labels = host.split('.');
  if (labels.length <= 2) return host;
  const lastTwo = labels.slice(-2).join('.');
  return TWO_LEVEL_SUFFIXES.has(lastTwo) ? labels.slice(-3).join('.') : lastTwo;
}

/** The name to prefix to a zone: the domain, or an IPv4 reversed (SURBL style). */
export function queryName(domain, zone) {
  const prefix = isIPv4(domain) ? domain.split('.').reverse().join('.') : domain;
  return `${prefix}.${zone}`;
}

function suffixMatch(host, entry) {
  return host === entry || host.endsWith(`.${entry}`);
}

/** The local blocklist entry that `host` falls under, or null. */
export function locallyBlocked(host, cfg) {
  return cfg.blocked_domains.find((e) => suffixMatch(host, e)) ?? null;
}

/**
 * The look-ups to make: every (domain, zone) pair for the deduplicated
 * registered domains, domain by domain (so each domain is checked against
 * every zone before the next one), minus the skipped and the locally
 * blocked, at most `cfg.max_lookups`.
 */
export function planLookups(hosts, cfg) {
  const domains = [];
  for (const h of hosts) {
    if (locallyBlocked(h, cfg) !== null) continue;
    const d = registeredDomain(h);
    if (cfg.skip_domains.some((e) => suffixMatch(d, e))) continue;
    if (!domains.includes(d)) domains.push(d);
  }
  const plan = [];
  for (const domain of domains) {
    for (const zone of cfg.zones) {
      if (plan.length >= cfg.max_lookups) return { plan, skipped: true };
      plan.push({ domain, zone, name: queryName(domain, zone.zone) });
    }
  }
  return { plan, skipped: false };
}

/**
 * Whether an A answer means "listed" for this zone. Only 127.0.0.0/8
 * counts (anything else is a resolver rewriting NXDOMAIN); the zone's
 * `ignore` addresses (default 127.0.0.1, URIBL's "query refused") and
 * 127.255.255.0/24 (Spamhaus's error codes) never count; with a `mask`,
 * the last octet must share a bit with it (SURBL/URIBL multi lists).
 */
export function isListed(addrs, zone) {
  return addrs.some((a) => {
    if (!isIPv4(a) || !a.startsWith('127.')) return false;
    if (zone.ignore.includes(a) || a.startsWith('127.255.255.')) return false;
    if (zone.mask !== null) return (Number(a.split('.')[3]) & zone.mask) !== 0;
    return true;
  });
}
