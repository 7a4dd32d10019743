import unittest

from logic import matches, parse_config


class LogicTest(unittest.TestCase):
    def test_config(self):
        self.assertEqual(parse_config("{}"), "python")
        self.assertEqual(parse_config(""), "python")
        self.assertEqual(parse_config('{"word": "snake"}'), "snake")
        for bad in ('[', '[]', '{"word": 3}', '{"word": ""}'):
            with self.assertRaises(ValueError):
                parse_config(bad)

    def test_matches(self):
        self.assertTrue(matches("I like PYTHON", "python"))
        self.assertTrue(matches("Pythonic", "python"))
        self.assertFalse(matches("Rust only", "python"))
        self.assertFalse(matches(None, "python"))


if __name__ == "__main__":
    unittest.main()
