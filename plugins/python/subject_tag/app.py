"""py-subject-tag: a Poczta plugin written in Python (componentize-py 0.25.1).

Hook: `headers`. When the decoded Subject contains the configured word
(case-insensitive), it adds the score symbol PY_SUBJECT_TAG (weight 2.0) and
the header `X-Poczta-Python: seen`; it always continues.

Config (optional): `config = { word = "python" }` (default "python"). A bad
config makes the hook fail (Err), so the plugin's `on_error` policy applies.

Build (what plugins/build does):
    componentize-py -d ../../../wit -w plugin componentize app -p . -o py-subject-tag.wasm
Bindings for an IDE:  componentize-py -d ../../../wit -w plugin bindings .bindings
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host, transaction, types

from logic import matches, parse_config

NAME = "py-subject-tag"
VERSION = "0.1.0"

CONTINUE = types.Verdict_Continue()


class Hooks(exports.Hooks):
    # Must not call host functions (the host calls it at load time).
    def describe(self) -> types.PluginInfo:
        return types.PluginInfo(name=NAME, version=VERSION, hooks=[types.Hook.HEADERS])

    def headers(self, env, msg) -> types.Verdict:
        try:
            word = parse_config(host.config())
        except ValueError as e:
            raise Err(str(e))
        if matches(msg.header_decoded("subject"), word):
            transaction.add_symbol("PY_SUBJECT_TAG", 2.0, f"subject contains '{word}'")
            transaction.add_header("X-Poczta-Python", "seen")
        return CONTINUE

    # Hooks not listed in `describe`: never called by the host; "no opinion".
    def connect(self, conn) -> types.Verdict:
        return CONTINUE

    def helo(self, conn) -> types.Verdict:
        return CONTINUE

    def mail_from(self, env) -> types.Verdict:
        return CONTINUE

    def rcpt(self, env, rcpt) -> types.RcptVerdict:
        return types.RcptVerdict_Continue()

    def body(self, env, msg) -> types.Verdict:
        return CONTINUE

    def deliver(self, env, rcpt, msg) -> types.Delivery:
        return types.Delivery_Continue()
