import pytest

from agentdesk.domain.identity import (
    CHANNEL_IDENTITY,
    IDENTITY_KINDS,
    MIN_PHONE_DIGITS,
    AddressError,
    _phones_in_text,
    contacts_in_text,
    normalize_address,
    normalize_chat,
    normalize_email,
    normalize_phone,
)

# ---------------------------------------------------------------- phone


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155550100", "US", "+14155550100"),
        ("+1 415 555 0100", "US", "+14155550100"),
        ("(415) 555-0100", "US", "+14155550100"),
        ("415.555.0100", "US", "+14155550100"),
        ("1-415-555-0100", "US", "+14155550100"),
        ("  4155550100  ", "US", "+14155550100"),
        ("+1 (415) 555-0100", "GB", "+14155550100"),  # an explicit + beats the default region
        ("tel:+1-415-555-0100", "US", "+14155550100"),
        ("sms:+14155550100", "US", "+14155550100"),
        ("1-800-FLOWERS", "US", "+18003569377"),  # vanity letters are keypad digits
        ("020 7946 0018", "GB", "+442079460018"),
        ("+44 (0)20 7946 0018", "GB", "+442079460018"),
        ("00 44 20 7946 0018", "DE", "+442079460018"),
        ("011 44 20 7946 0018", "US", "+442079460018"),
        ("07700 900123", "GB", "+447700900123"),  # Ofcom's fictional range: possible, not "valid"
        ("030 12345678", "DE", "+493012345678"),
        ("01 23 45 67 89", "FR", "+33123456789"),
        ("0491 570 156", "AU", "+61491570156"),
        ("612 34 56 78", "ES", "+34612345678"),
        ("+81 3-1234-5678", "US", "+81312345678"),
    ],
)
def test_phone_to_e164(raw, region, expected):
    assert normalize_phone(raw, region) == expected


def test_default_region_is_us():
    assert normalize_phone("(415) 555-0100") == "+14155550100"


@pytest.mark.parametrize(
    "raw",
    ["whatsapp:+14155550100", "WhatsApp:+1 415 555 0100", "whatsapp: +14155550100"],
)
def test_whatsapp_prefix_gives_the_bare_number(raw):
    assert normalize_phone(raw) == normalize_phone("+14155550100") == "+14155550100"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("+1 555", "too short"),
        ("12", "too short"),
        ("555-0100", "include the area code"),
        ("+44 20 7946 00189999", "too long"),
        ("+999 1234567", "unknown country code"),
        ("hello", "not a number"),
        ("", "empty"),
        ("   ", "empty"),
        ("whatsapp:", "empty"),
    ],
)
def test_invalid_phone_rejected_with_clear_message(raw, reason):
    with pytest.raises(AddressError) as info:
        normalize_phone(raw)
    message = str(info.value)
    assert message.startswith(f"{raw!r} is not a valid phone number")
    assert reason in message


def test_national_number_without_region_asks_for_country_code():
    with pytest.raises(AddressError, match="no country code; start it with \\+"):
        normalize_phone("020 7946 0018", default_region="ZZ")


def test_address_error_is_a_value_error():
    with pytest.raises(ValueError):
        normalize_phone("+1 555")


def test_huge_input_is_quoted_short():
    with pytest.raises(AddressError) as info:
        normalize_phone("9" * 500)
    assert len(str(info.value)) < 120


@pytest.mark.parametrize("raw", ["+15555555555", "+447700900123"])
def test_strict_demands_an_assigned_range(raw):
    assert normalize_phone(raw) == raw  # possible: accepted by default
    with pytest.raises(AddressError, match="not in an assigned number range"):
        normalize_phone(raw, strict=True)


def test_strict_accepts_a_valid_number():
    assert normalize_phone("020 7946 0018", "GB", strict=True) == "+442079460018"
    assert normalize_phone("+14155550100", strict=True) == "+14155550100"


# ---------------------------------------------------------------- email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jane.doe@example.com", "jane.doe@example.com"),
        ("Jane.Doe@Example.COM", "jane.doe@example.com"),
        ("  jane+support@example.com  ", "jane+support@example.com"),
        ('"Name" <a@B.com>', "a@b.com"),
        ('"Doe, Jane" <Jane.Doe@Example.com>', "jane.doe@example.com"),
        ("Jane Doe <jane@example.co.uk>", "jane@example.co.uk"),
        ("<jane@example.com>", "jane@example.com"),
        ("jane.doe@example.com (Jane Doe)", "jane.doe@example.com"),
        ("mailto:Jane@Example.com", "jane@example.com"),
        ("josé@Exämple.de", "josé@exämple.de"),
    ],
)
def test_email_forms(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("jane", "exactly one @"),
        ("@example.com", "nothing before the @"),
        ("jane@example", "example.com"),
        ("jane@example..com", "example.com"),
        ("jane@-example.com", "example.com"),
        ("jane@example.com.", "example.com"),
        ("jane@@example.com", "exactly one @"),
        ("<>", "unreadable"),
        ("a@b.com, c@d.com", "more than one address"),
        ("jane doe@example.com", "spaces"),
        ("jane@exa mple.com", "spaces"),
        ("a\x1b@example.com", "control characters"),
        ("j" * 250 + "@example.com", "longer than 254"),
    ],
)
def test_invalid_email_rejected(raw, reason):
    with pytest.raises(AddressError) as info:
        normalize_email(raw)
    assert "is not a valid email address" in str(info.value)
    assert reason in str(info.value)


# ---------------------------------------------------------------- chat


def test_chat_id_is_stripped_and_keeps_case():
    assert normalize_chat("  chat:visitor-1A2b \n") == "chat:visitor-1A2b"


def test_chat_id_length_limit():
    assert normalize_chat("v" * 200) == "v" * 200
    with pytest.raises(AddressError, match="longer than 200"):
        normalize_chat("v" * 201)


@pytest.mark.parametrize("raw", ["", "   ", "\x1b[2Jvisitor", "visitor\x07", "vis\u202eitor", "a\x9bb"])
def test_chat_id_rejects_empty_and_control_characters(raw):
    with pytest.raises(AddressError):
        normalize_chat(raw)


# ---------------------------------------------------------------- normalize_address


def test_channels_map_to_identity_kinds():
    assert CHANNEL_IDENTITY == {"phone": "phone", "sms": "phone", "whatsapp": "phone", "email": "email", "chat": "chat"}
    assert set(CHANNEL_IDENTITY.values()) <= set(IDENTITY_KINDS)


def test_sms_whatsapp_and_voice_from_one_number_are_one_identity():
    voice = normalize_address("phone", "(415) 555-0100")
    sms = normalize_address("sms", "+1 415-555-0100")
    whatsapp = normalize_address("whatsapp", "whatsapp:+14155550100")
    assert voice == sms == whatsapp == ("phone", "+14155550100")


def test_normalize_address_email_chat_and_region():
    assert normalize_address("email", '"Jane" <Jane@Example.com>') == ("email", "jane@example.com")
    assert normalize_address("chat", " visitor-9f ") == ("chat", "visitor-9f")
    assert normalize_address("sms", "07700 900123", default_region="GB") == ("phone", "+447700900123")


@pytest.mark.parametrize("channel", ["fax", "", "SMS", "voice"])
def test_unknown_channel_rejected(channel):
    with pytest.raises(AddressError, match="unknown channel"):
        normalize_address(channel, "+14155550100")


def test_normalize_address_propagates_errors():
    with pytest.raises(AddressError, match="not a valid email"):
        normalize_address("email", "not-an-address")
    with pytest.raises(AddressError, match="not a valid phone"):
        normalize_address("whatsapp", "whatsapp:+1 555")


# ---------------------------------------------------------------- contacts_in_text

SIGNATURE = """\
Thanks for sorting this out so quickly!

Kind regards,
Jane Doe | Head of Operations, Acme Ltd
Mobile: +44 7700 900123   Office: 020 7946 0018
US desk: +1 (415) 555-0100 ext. 12
Acme Ltd, 1 Example Street, London EC1A 1BB. Registered no. 12345678, VAT GB 123 4567 89
Order #12345678, invoice dated 2026-12-25, ref 1234 5678 9012
Email: Jane.Doe@Acme.co.uk | alt: j.doe@EXAMPLE.com
Texts to 14155550199@sms.example.com are not monitored.
Reply to jane.doe@acme.co.uk. Office again: +44 20 7946 0018
"""


def test_contacts_in_a_signature():
    assert contacts_in_text(SIGNATURE, "GB") == [
        ("phone", "+447700900123"),
        ("phone", "+442079460018"),
        ("phone", "+14155550100"),
        ("email", "jane.doe@acme.co.uk"),
        ("email", "j.doe@example.com"),
        ("email", "14155550199@sms.example.com"),
    ]


def test_default_region_decides_national_numbers():
    found = contacts_in_text(SIGNATURE)  # read as US: 020 7946 0018 is no US number
    assert ("phone", "+442079460018") in found  # ...but the +44 spelling later still is
    assert ("phone", "+14155550199") not in found  # digits inside an email address are not a phone


def test_contacts_in_a_pre_chat_form():
    form = (
        "Name: Maria García | Email: Maria.Garcia@Example.ES | Teléfono: +34 600 555 123 | "
        "Pedido: 4471-2290 | Mensaje: mi número nuevo es 612 34 56 78, antes 600555123; fecha 12/03/2026"
    )
    assert contacts_in_text(form, "ES") == [
        ("email", "maria.garcia@example.es"),
        ("phone", "+34600555123"),
        ("phone", "+34612345678"),
    ]


def test_us_pre_chat_form():
    form = "name=Sam Lee\nemail=SAM.LEE@example.com\nphone=(415) 555-0100\ntopic=billing, account 55501234"
    assert contacts_in_text(form) == [("email", "sam.lee@example.com"), ("phone", "+14155550100")]


def test_the_shortest_numbers_are_found():
    """4 digits: +49 12 (German, local-only length) and Niue's national numbers; MIN_PHONE_DIGITS may not exceed them."""
    assert MIN_PHONE_DIGITS <= 4
    assert contacts_in_text("call +49 12") == [("phone", "+4912")]
    assert contacts_in_text("call 4002", "NU") == [("phone", "+6834002")]


def test_no_region_has_a_number_of_fewer_digits_than_the_scan_needs():
    """contacts_in_text skips phonenumbers' matcher for texts with fewer than MIN_PHONE_DIGITS digits: lossless
    only while no number the matcher keeps is shorter. By the metadata (national and +country-code spellings),
    and by trying every shorter digit string where numbers are shortest or parsing rewrites them (SM adds digits)."""
    from itertools import product

    from phonenumbers import PhoneMetadata
    from phonenumbers.phonenumberutil import COUNTRY_CODES_FOR_NON_GEO_REGIONS, SUPPORTED_REGIONS

    metadata = [PhoneMetadata.metadata_for_region(r) for r in SUPPORTED_REGIONS]
    metadata += [PhoneMetadata.metadata_for_nongeo_region(cc) for cc in COUNTRY_CODES_FOR_NON_GEO_REGIONS]
    for md in metadata:
        lengths = [n for n in md.general_desc.possible_length if n > 0]
        local = [n for n in md.general_desc.possible_length_local_only or () if n > 0]
        assert min(lengths) >= MIN_PHONE_DIGITS, md.id
        assert len(str(md.country_code)) + min(lengths + local) >= MIN_PHONE_DIGITS, md.id
    short = ["".join(p) for n in range(1, MIN_PHONE_DIGITS) for p in product("0123456789", repeat=n)]
    for region in ("US", "DE", "AT", "NU", "SH", "SM", "AR"):
        for digits in short:
            for text in (digits, f"+{digits}", f"(+{digits[:1]}) {digits[1:]}"):
                assert _phones_in_text(text, region) == [], (region, text)


def test_nothing_to_find():
    assert contacts_in_text("") == []
    assert contacts_in_text("Call me tomorrow after 5, order 123456, thanks!") == []
    assert contacts_in_text("broken@address and a@b") == []
