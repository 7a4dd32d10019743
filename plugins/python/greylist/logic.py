"""Pure logic of the py-greylist plugin: config, exemptions, the triplet
key and the greylisting state machine. No WIT imports, so it is unit-tested
with a plain `python3 -m unittest` in this folder (see test_logic.py).

State kept per triplet in the plugin's key-value store (values are ASCII):

    "g <first-seen>"                 greylisted, waiting for the retry
                                     (expires after `retry_window`)
    "w <first-seen> <last-passed>"   passed: whitelisted (expires `ttl`
                                     after the last refresh)

Times are seconds since the epoch (`host.now()`).
"""

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass, field

# A short retry delay keeps the cost for real senders low (RFC 6647 warns
# against long delays); 5 minutes is the common default (postgrey, rspamd).
# A triplet that passed is kept for about a month so regular correspondents
# are delayed only once (postgrey keeps 35 days).
DEFAULT_DELAY = 5 * 60
DEFAULT_RETRY_WINDOW = 4 * 3600
DEFAULT_TTL = 36 * 86400
DEFAULT_IPV4_PREFIX = 24
DEFAULT_IPV6_PREFIX = 64
DEFAULT_TEXT = "Greylisted, try again later"

# A whitelisted triplet is rewritten (its expiry pushed back) at most once
# per this many seconds: one kv write a day per correspondent, not one per
# message.
REFRESH_EVERY = 86400

# The kv key limit of the host is 512 bytes; longer triplets are hashed.
MAX_PLAIN_KEY = 400

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
# BATV (draft-levine-smtp-batv): prvs=<tag>=local@domain, tag changes per
# message, so the raw sender would never match its retry.
_BATV = re.compile(r"^(?:prvs|btv1|msprvs1)=[^=@]+=", re.IGNORECASE)
# A dotted quad as ipaddress.IPv4Address accepts it: ASCII decimal octets
# without leading zeros (each also <= 255, checked after). The host hands
# client addresses in this form; parsing them here, not with ipaddress
# (pure Python, several calls deep), matters in the plugin's interpreter.
_OCTET = r"(0|[1-9][0-9]{0,2})"
_DOTTED_QUAD = re.compile(r"\.".join([_OCTET] * 4))


@dataclass
class Config:
    delay: int = DEFAULT_DELAY
    retry_window: int = DEFAULT_RETRY_WINDOW
    ttl: int = DEFAULT_TTL
    ipv4_prefix: int = DEFAULT_IPV4_PREFIX
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX
    exempt_authenticated: bool = True
    greylist_null_sender: bool = True
    allow_networks: list = field(default_factory=lambda: [
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    ])
    allow_sender_domains: list = field(default_factory=list)
    allow_recipients: list = field(default_factory=list)
    text: str = DEFAULT_TEXT


def parse_duration(value, name: str) -> int:
    """Seconds from an integer (seconds) or a string like "90", "5m", "4h",
    "36d", "2w". Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"'{name}' must be seconds or a duration like \"5m\"")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"'{name}' must not be negative")
        return value
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return int(m.group(1)) * _UNITS[m.group(2) or "s"]
    raise ValueError(f"'{name}' must be seconds or a duration like \"5m\", got {value!r}")


def _str_list(cfg: dict, name: str) -> list:
    v = cfg.get(name, [])
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ValueError(f"'{name}' must be a list of strings")
    return v


def _bool(cfg: dict, name: str, default: bool) -> bool:
    v = cfg.get(name, default)
    if not isinstance(v, bool):
        raise ValueError(f"'{name}' must be true or false")
    return v


def _prefix(cfg: dict, name: str, default: int, top: int) -> int:
    v = cfg.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= top:
        raise ValueError(f"'{name}' must be an integer from 0 to {top}")
    return v


KNOWN_KEYS = {
    "delay", "retry_window", "ttl", "ipv4_prefix", "ipv6_prefix",
    "exempt_authenticated", "greylist_null_sender", "allow_networks",
    "allow_sender_domains", "allow_recipients", "text",
}


def parse_config(text: str) -> Config:
    """The plugin's config from its JSON text ("{}" gives the defaults).

    Raises ValueError naming the offending key, so a typo in the server
    config shows up in the log instead of silently greylisting with
    defaults.
    """
    try:
        raw = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"invalid plugin config: {e}") from None
    if not isinstance(raw, dict):
        raise ValueError("invalid plugin config: not an object")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise ValueError(f"invalid plugin config: unknown key(s) {', '.join(unknown)}")
    cfg = Config()
    try:
        if "delay" in raw:
            cfg.delay = parse_duration(raw["delay"], "delay")
        if "retry_window" in raw:
            cfg.retry_window = parse_duration(raw["retry_window"], "retry_window")
        if "ttl" in raw:
            cfg.ttl = parse_duration(raw["ttl"], "ttl")
        cfg.ipv4_prefix = _prefix(raw, "ipv4_prefix", DEFAULT_IPV4_PREFIX, 32)
        cfg.ipv6_prefix = _prefix(raw, "ipv6_prefix", DEFAULT_IPV6_PREFIX, 128)
        cfg.exempt_authenticated = _bool(raw, "exempt_authenticated", True)
        cfg.greylist_null_sender = _bool(raw, "greylist_null_sender", True)
        if "allow_networks" in raw:
            nets = []
            for n in _str_list(raw, "allow_networks"):
                try:
                    nets.append(ipaddress.ip_network(n.strip(), strict=False))
                except ValueError:
                    raise ValueError(f"'allow_networks': {n!r} is not a network") from None
            cfg.allow_networks = nets
        cfg.allow_sender_domains = [
            d.strip().lower().lstrip("@").rstrip(".") for d in _str_list(raw, "allow_sender_domains")
        ]
        cfg.allow_recipients = [r.strip().lower() for r in _str_list(raw, "allow_recipients")]
        t = raw.get("text", DEFAULT_TEXT)
        if not isinstance(t, str) or not t.strip():
            raise ValueError("'text' must be a non-empty string")
        cfg.text = t
    except ValueError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith("invalid") else f"invalid plugin config: {msg}") from None
    if cfg.retry_window <= cfg.delay:
        raise ValueError("invalid plugin config: 'retry_window' must be longer than 'delay'")
    if cfg.ttl == 0:
        raise ValueError("invalid plugin config: 'ttl' must be positive")
    return cfg


def _ipv4_int(ip: str):
    """The value of `ip` if it is a dotted quad that ipaddress accepts, else
    None (then ipaddress decides: IPv6, or not an address)."""
    m = _DOTTED_QUAD.fullmatch(ip)
    if m is None:
        return None
    a, b, c, d = map(int, m.groups())
    if a > 255 or b > 255 or c > 255 or d > 255:
        return None
    return (a << 24) | (b << 16) | (c << 8) | d


def _address(ip: str):
    """ipaddress.ip_address(ip), an IPv4-mapped IPv6 address as IPv4; None
    when it is not an address."""
    n = _ipv4_int(ip)
    if n is not None:
        return ipaddress.IPv4Address(n)
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr


def client_network(ip: str, cfg: Config) -> str:
    """The client's network as the triplet uses it: the /24 (IPv4) or /64
    (IPv6) around the address, so a sender's pool of neighbouring outbound
    hosts retries as one client (RFC 6647 discusses such sender farms).

    An IPv4-mapped IPv6 address counts as IPv4. An unparsable address is
    used as is (the host always hands a valid one).
    """
    s = ip.strip()
    n = _ipv4_int(s)
    if n is not None:
        # What str(ipaddress.ip_network(...)) gives, without the objects.
        prefix = cfg.ipv4_prefix
        n &= 0xFFFFFFFF << (32 - prefix)
        return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}/{prefix}"
    addr = _address(s)
    if addr is None:
        return s.lower()
    prefix = cfg.ipv4_prefix if addr.version == 4 else cfg.ipv6_prefix
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))


def normalize_sender(sender: str) -> str:
    """The envelope sender as the triplet uses it: lower-cased, with a BATV
    tag removed (it changes on every retry). "<>" for the null sender."""
    s = sender.strip().lower()
    if not s:
        return "<>"
    # Nearly no sender has a tag; the regex needs an '=' (two, in fact).
    if "=" not in s:
        return s
    return _BATV.sub("", s)


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].rstrip(".")


def _domain_matches(domain: str, allowed: str) -> bool:
    return domain == allowed or domain.endswith("." + allowed)


def sender_exemption(cfg: Config, ip: str, authenticated, sender: str):
    """Why this transaction is not greylisted at all, or None.

    authenticated: the authenticated user (None when the client did not
    authenticate). Submission clients are users, not unknown MTAs.
    """
    if cfg.exempt_authenticated and authenticated:
        return f"authenticated as {authenticated}"
    # No list, no need to parse the address.
    addr = _address(ip.strip()) if cfg.allow_networks else None
    if addr is not None:
        for net in cfg.allow_networks:
            if addr.version == net.version and addr in net:
                return f"client in {net}"
    s = sender.strip().lower()
    if not s:
        if not cfg.greylist_null_sender:
            return "null sender"
        return None
    domain = _domain_of(s)
    for d in cfg.allow_sender_domains:
        if _domain_matches(domain, d):
            return f"sender domain {d}"
    return None


def recipient_exempt(cfg: Config, rcpt: str) -> bool:
    """Whether the recipient is allow-listed: an exact address, or "@domain"
    / "domain" for every address of the domain (e.g. postmaster@ and abuse@
    that must reach a human quickly)."""
    if not cfg.allow_recipients:
        return False
    r = rcpt.strip().lower()
    domain = _domain_of(r)
    for a in cfg.allow_recipients:
        if "@" in a.lstrip("@"):
            if r == a:
                return True
        elif domain == a.lstrip("@").rstrip("."):
            return True
    return False


def triplet_key(network: str, sender: str, rcpt: str) -> str:
    """The kv key of a triplet. Readable for an administrator when short;
    hashed when it would exceed the host's key limit."""
    key = f"t|{network}|{sender}|{rcpt.strip().lower()}"
    if len(key.encode()) <= MAX_PLAIN_KEY:
        return key
    return "h|" + hashlib.sha256(key.encode()).hexdigest()


@dataclass
class Decision:
    """What to do with one recipient.

    greylist: answer 451 (else continue).
    record, record_ttl: write this value with this TTL (None: no write).
    reason: for the log.
    delayed: seconds the triplet waited, when this attempt ends its wait.
    """

    greylist: bool
    record: "bytes | None"
    record_ttl: int
    reason: str
    delayed: "int | None" = None


def _parse_record(value):
    try:
        parts = bytes(value).decode("ascii").split()
        if parts[0] == "g" and len(parts) == 2:
            return "g", int(parts[1]), None
        if parts[0] == "w" and len(parts) == 3:
            return "w", int(parts[1]), int(parts[2])
    except (ValueError, IndexError, UnicodeDecodeError, TypeError):
        pass
    return None


def decide(record, now: int, cfg: Config) -> Decision:
    """The greylisting state machine for one triplet.

    record: the stored value (bytes) or None when unknown or expired.
    """
    parsed = _parse_record(record) if record is not None else None
    if parsed is None:
        return Decision(True, f"g {now}".encode(), cfg.retry_window, "new triplet")
    state, first, last = parsed
    if state == "w":
        if now - last >= REFRESH_EVERY:
            return Decision(False, f"w {first} {now}".encode(), cfg.ttl, "whitelisted (refreshed)")
        return Decision(False, None, 0, "whitelisted")
    elapsed = now - first
    if elapsed < 0 or elapsed > cfg.retry_window:
        # Outside the window (or a clock step back): a new first attempt.
        return Decision(True, f"g {now}".encode(), cfg.retry_window, "retry outside the window")
    if elapsed < cfg.delay:
        # Too early: the first-seen time stays, so hammering does not help
        # and does not hurt.
        return Decision(True, None, 0, f"retry too early ({elapsed}s of {cfg.delay}s)")
    return Decision(False, f"w {first} {now}".encode(), cfg.ttl, "retried in time", delayed=elapsed)
