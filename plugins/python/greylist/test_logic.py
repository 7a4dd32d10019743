import ipaddress
import random
import unittest

import logic
from logic import (
    Config,
    client_network,
    decide,
    normalize_sender,
    parse_config,
    parse_duration,
    recipient_exempt,
    sender_exemption,
    triplet_key,
)


class ConfigTest(unittest.TestCase):
    def test_defaults(self):
        for text in ("", "{}"):
            c = parse_config(text)
            self.assertEqual((c.delay, c.retry_window, c.ttl), (300, 4 * 3600, 36 * 86400))
            self.assertEqual((c.ipv4_prefix, c.ipv6_prefix), (24, 64))
            self.assertTrue(c.exempt_authenticated and c.greylist_null_sender)
            self.assertIn(ipaddress.ip_network("127.0.0.0/8"), c.allow_networks)
            self.assertEqual(c.text, "Greylisted, try again later")

    def test_durations(self):
        self.assertEqual(parse_duration(0, "d"), 0)
        self.assertEqual(parse_duration(90, "d"), 90)
        self.assertEqual(parse_duration("90", "d"), 90)
        self.assertEqual(parse_duration("5m", "d"), 300)
        self.assertEqual(parse_duration("4h", "d"), 14400)
        self.assertEqual(parse_duration("36d", "d"), 36 * 86400)
        self.assertEqual(parse_duration(" 2w ", "d"), 14 * 86400)
        for bad in (-1, True, "5 minutes", "1.5h", None, "m"):
            with self.assertRaises(ValueError):
                parse_duration(bad, "d")

    def test_full_config(self):
        c = parse_config(
            '{"delay": "1m", "retry_window": "2h", "ttl": "7d", "ipv4_prefix": 32,'
            ' "ipv6_prefix": 48, "exempt_authenticated": false,'
            ' "greylist_null_sender": false, "allow_networks": ["10.0.0.0/8", "2001:db8::/32"],'
            ' "allow_sender_domains": ["@Example.ORG."], "allow_recipients": ["Postmaster@x.test"],'
            ' "text": "come back later"}'
        )
        self.assertEqual((c.delay, c.retry_window, c.ttl), (60, 7200, 7 * 86400))
        self.assertEqual((c.ipv4_prefix, c.ipv6_prefix), (32, 48))
        self.assertFalse(c.exempt_authenticated or c.greylist_null_sender)
        self.assertEqual(len(c.allow_networks), 2, "the default loopback entry is replaced")
        self.assertEqual(c.allow_sender_domains, ["example.org"])
        self.assertEqual(c.allow_recipients, ["postmaster@x.test"])
        self.assertEqual(c.text, "come back later")

    def test_bad_configs_name_the_key(self):
        cases = {
            "[": "invalid plugin config",
            "[]": "not an object",
            '{"dealy": 5}': "dealy",
            '{"delay": "soon"}': "delay",
            '{"ipv4_prefix": 33}': "ipv4_prefix",
            '{"ipv6_prefix": true}': "ipv6_prefix",
            '{"allow_networks": ["10.0.0.0/33"]}': "allow_networks",
            '{"allow_networks": "10.0.0.0/8"}': "allow_networks",
            '{"exempt_authenticated": "yes"}': "exempt_authenticated",
            '{"delay": "5h", "retry_window": "4h"}': "retry_window",
            '{"ttl": 0}': "ttl",
            '{"text": ""}': "text",
        }
        for text, needle in cases.items():
            with self.assertRaises(ValueError, msg=text) as cm:
                parse_config(text)
            self.assertIn(needle, str(cm.exception), text)
            self.assertTrue(str(cm.exception).startswith("invalid plugin config"), text)


class TripletTest(unittest.TestCase):
    def test_network(self):
        c = Config()
        self.assertEqual(client_network("192.0.2.77", c), "192.0.2.0/24")
        self.assertEqual(client_network("2001:db8:1:2:3:4:5:6", c), "2001:db8:1:2::/64")
        self.assertEqual(client_network("::ffff:192.0.2.77", c), "192.0.2.0/24")
        c.ipv4_prefix = 32
        self.assertEqual(client_network("192.0.2.77", c), "192.0.2.77/32")
        self.assertEqual(client_network("garbage", c), "garbage")

    def test_sender(self):
        self.assertEqual(normalize_sender(""), "<>")
        self.assertEqual(normalize_sender("Bob@Example.ORG"), "bob@example.org")
        self.assertEqual(normalize_sender("prvs=1234abcd=bob@example.org"), "bob@example.org")
        self.assertEqual(normalize_sender("PRVS=0001=bob@example.org"), "bob@example.org")

    def test_key(self):
        k = triplet_key("192.0.2.0/24", "bob@example.org", "Alice@Example.TEST")
        self.assertEqual(k, "t|192.0.2.0/24|bob@example.org|alice@example.test")
        long = triplet_key("192.0.2.0/24", "b" * 300 + "@x.org", "a" * 300 + "@y.test")
        self.assertTrue(long.startswith("h|") and len(long) <= 512, long)
        self.assertNotEqual(long, triplet_key("192.0.2.0/24", "b" * 300 + "@x.org", "c" * 300 + "@y.test"))


class ExemptionTest(unittest.TestCase):
    def test_authenticated(self):
        c = Config()
        self.assertIn("alice", sender_exemption(c, "198.51.100.1", "alice@example.test", "a@b.test"))
        self.assertIsNone(sender_exemption(c, "198.51.100.1", None, "a@b.test"))
        c.exempt_authenticated = False
        self.assertIsNone(sender_exemption(c, "198.51.100.1", "alice@example.test", "a@b.test"))

    def test_networks(self):
        c = parse_config('{"allow_networks": ["198.51.100.0/24", "2001:db8::/32"]}')
        self.assertIsNotNone(sender_exemption(c, "198.51.100.9", None, "a@b.test"))
        self.assertIsNotNone(sender_exemption(c, "::ffff:198.51.100.9", None, "a@b.test"))
        self.assertIsNotNone(sender_exemption(c, "2001:db8::1", None, "a@b.test"))
        self.assertIsNone(sender_exemption(c, "203.0.113.9", None, "a@b.test"))
        self.assertIsNone(sender_exemption(c, "127.0.0.1", None, "a@b.test"), "loopback default replaced")
        self.assertIsNotNone(sender_exemption(Config(), "127.0.0.1", None, "a@b.test"))

    def test_sender_domains(self):
        c = parse_config('{"allow_sender_domains": ["example.org"]}')
        self.assertIsNotNone(sender_exemption(c, "203.0.113.9", None, "bob@example.org"))
        self.assertIsNotNone(sender_exemption(c, "203.0.113.9", None, "bob@mail.Example.org"))
        self.assertIsNone(sender_exemption(c, "203.0.113.9", None, "bob@badexample.org"))
        self.assertIsNone(sender_exemption(c, "203.0.113.9", None, "bob@example.org.evil.test"))

    def test_null_sender(self):
        self.assertIsNone(sender_exemption(Config(), "203.0.113.9", None, ""), "greylisted by default")
        c = parse_config('{"greylist_null_sender": false}')
        self.assertEqual(sender_exemption(c, "203.0.113.9", None, ""), "null sender")

    def test_recipients(self):
        c = parse_config('{"allow_recipients": ["postmaster@example.test", "@open.test", "free.test"]}')
        self.assertTrue(recipient_exempt(c, "PostMaster@example.test"))
        self.assertFalse(recipient_exempt(c, "alice@example.test"))
        self.assertTrue(recipient_exempt(c, "anyone@open.test"))
        self.assertTrue(recipient_exempt(c, "anyone@free.test"))
        self.assertFalse(recipient_exempt(c, "anyone@sub.free.test"))


class DecideTest(unittest.TestCase):
    def setUp(self):
        self.c = parse_config('{"delay": 300, "retry_window": "4h", "ttl": "36d"}')

    def test_first_attempt_is_greylisted_and_stored(self):
        d = decide(None, 1000, self.c)
        self.assertTrue(d.greylist)
        self.assertEqual((d.record, d.record_ttl), (b"g 1000", 4 * 3600))

    def test_too_early_keeps_first_seen(self):
        d = decide(b"g 1000", 1299, self.c)
        self.assertTrue(d.greylist)
        self.assertIsNone(d.record, "no write: the first-seen time stays")

    def test_retry_in_window_passes_and_whitelists(self):
        d = decide(b"g 1000", 1300, self.c)
        self.assertFalse(d.greylist)
        self.assertEqual((d.record, d.record_ttl, d.delayed), (b"w 1000 1300", 36 * 86400, 300))
        d = decide(b"g 1000", 1000 + 4 * 3600, self.c)
        self.assertFalse(d.greylist, "the window's last second still counts")

    def test_retry_after_window_starts_over(self):
        d = decide(b"g 1000", 1001 + 4 * 3600, self.c)
        self.assertTrue(d.greylist)
        self.assertEqual(d.record, f"g {1001 + 4 * 3600}".encode())

    def test_clock_step_back_starts_over(self):
        d = decide(b"g 5000", 4000, self.c)
        self.assertTrue(d.greylist)
        self.assertEqual(d.record, b"g 4000")

    def test_whitelisted_passes_and_refreshes_daily(self):
        d = decide(b"w 1000 1300", 1300 + 3600, self.c)
        self.assertFalse(d.greylist)
        self.assertIsNone(d.record, "no write within a day")
        d = decide(b"w 1000 1300", 1300 + logic.REFRESH_EVERY, self.c)
        self.assertFalse(d.greylist)
        self.assertEqual(d.record, f"w 1000 {1300 + logic.REFRESH_EVERY}".encode())
        self.assertEqual(d.record_ttl, 36 * 86400)
        self.assertIsNone(d.delayed, "not delayed: no X-Greylist header")

    def test_zero_delay_still_greylists_the_first_attempt(self):
        c = parse_config('{"delay": 0}')
        self.assertTrue(decide(None, 1000, c).greylist)
        self.assertFalse(decide(b"g 1000", 1000, c).greylist)

    def test_corrupt_record_is_a_new_triplet(self):
        for junk in (b"", b"x", b"g", b"g abc", b"w 1", b"\xff\xfe", b"w 1 2 3"):
            d = decide(junk, 1000, self.c)
            self.assertTrue(d.greylist, junk)
            self.assertEqual(d.record, b"g 1000", junk)

    def test_list_of_ints_record(self):
        # componentize-py may hand list<u8> as bytes; be tolerant of a list.
        self.assertFalse(decide(list(b"g 1000"), 1300, self.c).greylist)


class FastPathTest(unittest.TestCase):
    """The dotted-quad fast path (ipaddress is slow in the plugin's
    interpreter) and the shortcuts must agree with the plain ipaddress and
    regex code they stand for, on every input."""

    ADDRESSES = [
        "192.0.2.77", "127.0.0.1", "0.0.0.0", "255.255.255.255", "10.1.2.3", " 10.1.2.3\n",
        "256.0.0.1", "1.2.3.256", "999.1.1.1", "01.2.3.4", "1.2.3.04", "0.0.0.00", "1.2.3", "1.2.3.4.5",
        "1..2.3", "1.2.3.", ".1.2.3", "1.2.3.4/24", "+1.2.3.4", "-1.2.3.4", "1_0.2.3.4", " 1.2.3.4",
        "\u0661.2.3.4", "1\u0661.2.3.4", "1.2.3.\uff14", "2\uff15\uff15.1.1.1", "1.2.3.\u00b2", "0x7f.0.0.1", "1.2.3.4 ", "1.2.3.4%eth0",
        "::ffff:192.0.2.77", "::ffff:127.0.0.1", "2001:db8:1:2:3:4:5:6", "::1", "2001:DB8::1", "fe80::1%eth0",
        "garbage", "", "   ", "Garbage.Example",
    ]

    @staticmethod
    def reference_network(ip, cfg):
        try:
            addr = ipaddress.ip_address(ip.strip())
        except ValueError:
            return ip.strip().lower()
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        prefix = cfg.ipv4_prefix if addr.version == 4 else cfg.ipv6_prefix
        return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False))

    @staticmethod
    def reference_in_networks(ip, cfg):
        try:
            addr = ipaddress.ip_address(ip.strip())
            if addr.version == 6 and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
        except ValueError:
            return None
        for net in cfg.allow_networks:
            if addr.version == net.version and addr in net:
                return f"client in {net}"
        return None

    def addresses(self):
        rnd = random.Random(6647)
        octets = ["0", "1", "9", "10", "99", "100", "127", "199", "200", "249", "250", "255", "256", "300",
                  "999", "00", "01", "010", "0255", "1000", ""]
        extra = [".".join(rnd.choice(octets) for _ in range(rnd.choice((3, 4, 4, 4, 5)))) for _ in range(3000)]
        return self.ADDRESSES + extra

    def test_network_agrees_with_ipaddress(self):
        c = Config()
        for ip in self.addresses():
            for c.ipv4_prefix, c.ipv6_prefix in ((24, 64), (0, 0), (1, 1), (8, 48), (23, 127), (31, 128), (32, 128)):
                self.assertEqual(client_network(ip, c), self.reference_network(ip, c), (ip, c.ipv4_prefix))

    def test_allow_networks_agree_with_ipaddress(self):
        configs = [
            Config(),
            parse_config('{"allow_networks": ["192.0.2.0/24", "10.0.0.0/8", "2001:db8::/32", "0.0.0.0/32"]}'),
            parse_config('{"allow_networks": ["0.0.0.0/0"]}'),
            parse_config('{"allow_networks": ["1.2.3.4/32", "255.255.255.255/32", "::/0"]}'),
        ]
        for c in configs:
            for ip in self.addresses():
                self.assertEqual(sender_exemption(c, ip, None, "a@b.test"), self.reference_in_networks(ip, c), ip)

    def test_sender_agrees_with_the_batv_regex(self):
        for sender in ("bob@example.org", "prvs=1234abcd=bob@example.org", "PRVS=0001=bob@example.org",
                       "btv1=x=bob@example.org", "MSPRVS1=x=bob@example.org", "prv\u017f=0001=bob@example.org",
                       "prvs=bob@example.org", "prvs==bob@example.org", "x=y=bob@example.org", "a=b@c", " <> ", ""):
            s = sender.strip().lower()
            self.assertEqual(normalize_sender(sender), logic._BATV.sub("", s) if s else "<>", sender)

    def test_no_allow_lists(self):
        c = parse_config('{"allow_networks": []}')
        self.assertIsNone(sender_exemption(c, "127.0.0.1", None, "a@b.test"))
        self.assertIsNone(sender_exemption(c, "garbage", None, "a@b.test"))
        self.assertFalse(recipient_exempt(c, "postmaster@example.test"))


if __name__ == "__main__":
    unittest.main()
