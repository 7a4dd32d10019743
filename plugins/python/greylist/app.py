"""py-greylist: RFC 6647 greylisting, a Poczta plugin written in Python
(componentize-py 0.25.1). See README.md for the config and behaviour.

Hooks: `mail-from` (validates the config once per transaction and notes
whether the whole transaction is exempt) and `rcpt` (the triplet check:
451 4.7.1 for an unknown triplet, pass after the retry). Needs the `kv`
grant; without it, or when the store fails, mail passes (greylisting fails
open: it must never lose mail because its own state is unavailable).

Build (what plugins/build does):
    componentize-py -d ../../../wit -w plugin componentize app -p . -o py-greylist.wasm
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, kv, transaction, types

import logic

NAME = "py-greylist"
VERSION = "1.0.0"

CONTINUE = types.Verdict_Continue()
RCPT_CONTINUE = types.RcptVerdict_Continue()

# Notes shared with later plugins of the transaction.
NOTE_EXEMPT = "greylist.exempt"
NOTE_DELAYED = "greylist.delayed"


# The parsed config. An instance's config never changes (a new config is a
# new plugin set, with new instances), but with `reuse` one instance serves
# many transactions: parsing once saves most of the plugin's own time per
# message, and fetching once a host call (a crossing of the component
# boundary) per hook. Nothing of a message is kept here.
_parsed: "logic.Config | None" = None


def _config() -> logic.Config:
    global _parsed
    if _parsed is not None:
        return _parsed
    try:
        cfg = logic.parse_config(host.config())
    except ValueError as e:
        raise Err(str(e))
    _parsed = cfg
    return cfg


def _exemption(cfg: logic.Config, env) -> "str | None":
    conn = env.connection
    return logic.sender_exemption(cfg, conn.client_ip, conn.authenticated, env.mail_from)


class Hooks(exports.Hooks):
    # Must not call host functions (the host calls it at load time).
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(
            name=NAME, version=VERSION, hooks=[types.Hook.MAIL_FROM, types.Hook.RCPT]
        )

    def mail_from(self, env) -> types.Verdict:
        cfg = _config()
        reason = _exemption(cfg, env)
        if reason is not None:
            transaction.set_note(NOTE_EXEMPT, reason)
            host.log(host.Level.DEBUG, f"not greylisting this transaction: {reason}")
        return CONTINUE

    def rcpt(self, env, rcpt) -> types.RcptVerdict:
        cfg = _config()
        # The exemption is recomputed (pure and cheap, unlike the host call
        # that reads the note); the note is still honoured, whoever set it.
        if _exemption(cfg, env) is not None or transaction.get_note(NOTE_EXEMPT) is not None:
            return RCPT_CONTINUE
        if logic.recipient_exempt(cfg, rcpt):
            return RCPT_CONTINUE

        conn = env.connection
        network = logic.client_network(conn.client_ip, cfg)
        sender = logic.normalize_sender(env.mail_from)
        key = logic.triplet_key(network, sender, rcpt)
        try:
            record = kv.get(key)
        except Err as e:
            host.log(host.Level.WARN, f"kv get failed ({_kind(e)}): not greylisting")
            return RCPT_CONTINUE

        decision = logic.decide(record, host.now(), cfg)
        if decision.record is not None:
            try:
                kv.set(key, decision.record, decision.record_ttl)
            except Err as e:
                # Tempfailing without a stored first-seen time would refuse
                # the retry too, for ever: let the mail through instead.
                host.log(host.Level.WARN, f"kv set failed ({_kind(e)}): not greylisting")
                return RCPT_CONTINUE

        if decision.greylist:
            triplet = f"({network}, {sender}, {rcpt})"
            host.log(host.Level.INFO, f"greylisted {triplet}: {decision.reason}")
            return types.RcptVerdict_Tempfail(
                types.Reply(code=451, enhanced="4.7.1", text=cfg.text)
            )
        if decision.delayed is not None:
            triplet = f"({network}, {sender}, {rcpt})"
            host.log(host.Level.INFO, f"passed {triplet} after {decision.delayed}s")
            # One header per message, though several recipients may pass.
            if transaction.get_note(NOTE_DELAYED) is None:
                transaction.set_note(NOTE_DELAYED, str(decision.delayed))
                transaction.add_header(
                    "X-Greylist", f"delayed {decision.delayed} seconds by {NAME}"
                )
        return RCPT_CONTINUE

    # Hooks not listed in `describe`: never called by the host; "no opinion".
    def connect(self, conn) -> types.Verdict:
        return CONTINUE

    def helo(self, conn) -> types.Verdict:
        return CONTINUE

    def headers(self, env, msg) -> types.Verdict:
        return CONTINUE

    def body(self, env, msg) -> types.Verdict:
        return CONTINUE

    def deliver(self, env, rcpt, msg) -> types.Delivery:
        return types.Delivery_Continue()


def _kind(e: Err) -> str:
    """The host-error case name ("not-granted", "timeout", ...)."""
    v = e.value
    name = type(v).__name__  # HostError_NotGranted, HostError_Failed, ...
    detail = getattr(v, "value", None)
    kind = name.rpartition("_")[2].lower() if "_" in name else name
    return f"{kind}: {detail}" if detail else kind
