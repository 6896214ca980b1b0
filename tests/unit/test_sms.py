"""SMS encoding and segment counts against known examples (GSM 03.38, 3GPP TS 23.038)."""

from __future__ import annotations

import pytest

from agentdesk.domain.sms import GSM7_BASIC, GSM7_EXTENSION, count


def test_the_gsm7_tables_have_their_standard_sizes():
    assert len(GSM7_BASIC) == 127  # 128 code points less the escape to the extension table
    assert len(GSM7_EXTENSION) == 10 and not GSM7_BASIC & GSM7_EXTENSION


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("", "GSM-7", 0, 0),
        ("Hello, your refund is on its way.", "GSM-7", 33, 1),
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),  # 2 × 153
        ("a" * 307, "GSM-7", 307, 3),
        ("Prix: 20€", "GSM-7", 10, 1),  # € is in the extension table: 2 units
        ("[]{}~^|\\€\f", "GSM-7", 20, 1),
        ("€" * 80, "GSM-7", 160, 1),
        ("€" * 81, "GSM-7", 162, 2),
        ("Ça coûte 5 £", "UCS-2", 12, 1),  # û is not GSM-7: the whole message goes UCS-2
        ("Grüße aus Köln, España", "GSM-7", 22, 1),  # ü, ß, ö, ñ are in the basic table
        ("Grüße aus Köln, Ñandú", "UCS-2", 21, 1),  # but ú is not
        ("x" * 70 + "é", "GSM-7", 71, 1),
        ("ş" * 70, "UCS-2", 70, 1),
        ("ş" * 71, "UCS-2", 71, 2),
        ("ş" * 134, "UCS-2", 134, 2),  # 2 × 67
        ("ş" * 135, "UCS-2", 135, 3),
        ("Thanks 👍", "UCS-2", 9, 1),  # the emoji is a surrogate pair: 2 UTF-16 units
        ("👍" * 35, "UCS-2", 70, 1),
        ("👍" * 36, "UCS-2", 72, 2),
        ("你好", "UCS-2", 2, 1),
    ],
)
def test_known_examples(text, encoding, units, segments):
    got = count(text)
    assert (got.encoding, got.units, got.segments) == (encoding, units, segments)
    assert got.chars == len(text)


def test_an_extension_character_is_never_split_between_parts():
    # 152 plain units then a €: the € (2 units) does not fit the first part's 153, so it opens the second.
    assert count("a" * 152 + "€" + "a" * 151).segments == 2  # 152 | 2 + 151 = 153
    assert count("a" * 152 + "€" + "a" * 152).segments == 3


def test_an_emoji_is_never_split_between_parts():
    # 66 units then an emoji (2): it cannot straddle the 67-unit boundary.
    assert count("ş" * 66 + "👍" + "ş" * 65).segments == 2  # 66 | 2 + 65 = 67
    assert count("ş" * 66 + "👍" + "ş" * 66).segments == 3


def test_the_composer_line():
    assert count("a" * 42).describe() == "42 chars · GSM-7 · 1 segment"
    assert count("ş" * 71).describe() == "71 chars · UCS-2 · 2 segments"
    assert count("a").describe() == "1 char · GSM-7 · 1 segment"
