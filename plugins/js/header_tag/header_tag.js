// js-header-tag: a Poczta plugin written in JavaScript (componentize-js
// 0.23.0, StarlingMonkey engine).
//
// Hook: `headers`. For every message it adds the header `X-Poczta-JS: seen`
// and the score symbol JS_SEEN (weight 0.5), and continues. No config.
//
// Build (what plugins/build does, from plugins/js):
//   npx --no-install componentize-js header_tag/header_tag.js --wit ../../wit \
//       -n plugin -d http fetch-event stdio -o ../dist/js-header-tag.wasm
//
// How the WIT maps to JavaScript (StarlingMonkey bindings):
// * the export `hooks` is the exported object `hooks`, its functions in
//   camelCase (`mailFrom`);
// * imports come from 'poczta:plugin/<interface>@0.1.0' (`addHeader`, ...);
// * enums are strings ('headers', 'info'); variants are `{ tag, val }`
//   objects ({ tag: 'continue' }, { tag: 'reject', val: { code, enhanced, text } });
// * a `result` return is the ok value; `err` is a thrown string (throwing an
//   Error object traps); host functions returning `result` throw an error
//   whose `payload` is the host-error (`{ tag: 'not-granted' }`);
// * u64 values (now(), raw offsets, sizes) are BigInt.

import { addHeader, addSymbol } from 'poczta:plugin/transaction@0.1.0';

const CONTINUE = { tag: 'continue' };

export const hooks = {
  // Must not call host functions (the host calls it at load time).
  describe() {
    return { name: 'js-header-tag', version: '0.1.0', hooks: ['headers'] };
  },

  headers(env, msg) {
    addHeader('X-Poczta-JS', 'seen');
    addSymbol('JS_SEEN', 0.5, 'seen by js-header-tag');
    return CONTINUE;
  },

  // Hooks not listed in `describe`: never called by the host; "no opinion".
  connect(conn) { return CONTINUE; },
  helo(conn) { return CONTINUE; },
  mailFrom(env) { return CONTINUE; },
  rcpt(env, rcpt) { return CONTINUE; },
  body(env, msg) { return CONTINUE; },
  deliver(env, rcpt, msg) { return CONTINUE; },
};
