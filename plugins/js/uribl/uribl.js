// js-uribl: URI blocklist checks (SURBL/URIBL style), a Poczta plugin
// written in JavaScript (componentize-js 0.23.0, StarlingMonkey). See
// README.md for the config and behaviour; the pure logic is logic.js.
//
// Hook: `body`. Collects the hosts of the links in the text/plain and
// text/html parts (decoded by the host), reduces them to registered
// domains, and
//  * rejects or scores a domain of the local `blocked_domains` list (no DNS);
//  * looks each domain up in every configured zone (`<domain>.<zone>` A,
//    reversed octets for an IPv4 host), at most `max_lookups` queries, and
//    per listing zone adds its score symbol or rejects.
// Needs the `dns` grant for the zones. A DNS failure or time-out never
// blocks mail: the look-ups stop and the message goes on unscored.
//
// Build (what plugins/build does, from plugins/js):
//   componentize-js uribl/uribl.js --wit ../../wit -n plugin -d http fetch-event stdio -o ../dist/js-uribl.wasm

import { addSymbol } from 'poczta:plugin/transaction@0.1.0';
import { config, log } from 'poczta:plugin/host@0.1.0';
import { lookupA } from 'poczta:plugin/dns@0.1.0';

import { extractHosts, isListed, locallyBlocked, parseConfig, planLookups, registeredDomain } from './logic.js';

const NAME = 'js-uribl';
const VERSION = '1.0.0';
const CONTINUE = { tag: 'continue' };

function reject(text) {
  return { tag: 'reject', val: { code: 554, enhanced: '5.7.1', text } };
}

// The parsed config. An instance's config never changes (a new config is
// a new plugin set, with new instances), and with `reuse` one instance
// serves many transactions: fetching it once saves a host call per message
// (each one crosses the component boundary). Nothing of a message is kept
// here.
let parsed = null;

function loadConfig() {
  if (parsed !== null) return parsed;
  const raw = config();
  try {
    parsed = parseConfig(raw);
    return parsed;
  } catch (e) {
    // A hook's `err` must be a string: an Error object would be a trap.
    throw String(e?.message ?? e);
  }
}

/** The URL hosts of every text part, deduplicated, in order. */
function messageHosts(msg, cfg) {
  const hosts = [];
  for (const part of msg.parts()) {
    const isHtml = part.contentType === 'text/html';
    if (!isHtml && part.contentType !== 'text/plain') continue;
    let text = msg.partText(part.index);
    if (text === undefined || text === null) continue;
    if (text.length > cfg.max_text_bytes) text = text.slice(0, cfg.max_text_bytes);
    for (const h of extractHosts(text, isHtml)) if (!hosts.includes(h)) hosts.push(h);
  }
  return hosts;
}

function errorKind(e) {
  return e?.payload?.tag ?? String(e?.message ?? e);
}

export const hooks = {
  // Must not call host functions (the host calls it at load time).
  describe() {
    return { name: NAME, version: VERSION, hooks: ['body'] };
  },

  body(env, msg) {
    const cfg = loadConfig();
    const hosts = messageHosts(msg, cfg);
    if (hosts.length === 0) return CONTINUE;

    // The local list first: it needs no DNS and may end the check.
    const local = [];
    for (const h of hosts) {
      const entry = locallyBlocked(h, cfg);
      if (entry !== null && !local.includes(entry)) local.push(entry);
    }
    if (local.length > 0) {
      log('info', `links to locally blocked ${local.join(', ')}`);
      if (cfg.blocked_action === 'reject') {
        return reject(`Message refused: it links to ${local[0]}, which is blocked here`);
      }
      addSymbol('URIBL_LOCAL', cfg.blocked_weight, `links to ${local.join(', ')}`);
    }

    const { plan, skipped } = planLookups(hosts, cfg);
    if (skipped) {
      const domains = new Set(hosts.map(registeredDomain)).size;
      log('debug', `${domains} domains: checking only the first ${cfg.max_lookups} look-ups`);
    }
    const hits = new Map(); // zone name → { zone, domains: [] }
    for (const { domain, zone, name } of plan) {
      let addrs;
      try {
        addrs = lookupA(name);
      } catch (e) {
        const kind = errorKind(e);
        // A time-out means the rest of the hook's budget is going too;
        // a refused grant or quota will not change within this message.
        if (kind === 'timeout' || kind === 'quota' || kind === 'not-granted') {
          log('warn', `DNS ${kind} for ${name}: no further URI look-ups for this message`);
          break;
        }
        log('debug', `DNS failed for ${name}: ${kind}`);
        continue;
      }
      if (!isListed(addrs, zone)) continue;
      log('info', `${domain} is listed in ${zone.zone} (${addrs.join(', ')})`);
      if (zone.action === 'reject') {
        return reject(`Message refused: it links to ${domain}, listed in ${zone.zone}`);
      }
      const hit = hits.get(zone.zone) ?? { zone, domains: [] };
      hit.domains.push(domain);
      hits.set(zone.zone, hit);
    }
    // One symbol per zone, however many of its domains the message links to.
    for (const { zone, domains } of hits.values()) {
      addSymbol(zone.symbol, zone.weight, `${domains.join(', ')} listed in ${zone.zone}`);
    }
    return CONTINUE;
  },

  // Hooks not listed in `describe`: never called by the host; "no opinion".
  connect(conn) { return CONTINUE; },
  helo(conn) { return CONTINUE; },
  mailFrom(env) { return CONTINUE; },
  rcpt(env, rcpt) { return CONTINUE; },
  headers(env, msg) { return CONTINUE; },
  deliver(env, rcpt, msg) { return CONTINUE; },
};
