"""Realistic-looking personal identifiers for the synthetic bank.

Formats follow what a UK support inbox really contains (so the masking layer is tested against
the shapes it will meet): mobile numbers in national and international style, 8-digit account
numbers, Luhn-valid 16-digit card numbers grouped in fours, and GB IBANs with correct mod-97
check digits. Card numbers, sort codes and IBANs are derived from the account number with a hash,
not drawn from a stream, so a customer quotes the same card in every email without the generator
having to store it in the CRM.
"""

from __future__ import annotations

import hashlib
import random

BANK_CODE = "EXBK"

# Spaces inside one identifier are written as this separator while a body is being word-wrapped,
# so a phone or card number is never split across two lines; it becomes a space afterwards.
KEEP_TOGETHER = "\x1f"


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass the Luhn check."""
    total = 0
    for position, char in enumerate(reversed(partial)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def luhn_valid(number: str) -> bool:
    """Whether a digit string (spaces allowed) passes the Luhn check."""
    digits = number.replace(" ", "")
    return digits.isdigit() and luhn_check_digit(digits[:-1]) == digits[-1]


def _digits_from(value: str, salt: str, count: int) -> str:
    digest = hashlib.sha256(f"{salt}:{value}".encode()).hexdigest()
    return str(int(digest, 16))[:count].rjust(count, "0")


def card_number_for(account_number: str) -> str:
    """The customer's Visa debit card number: 16 digits, Luhn-valid, grouped in fours."""
    partial = "4" + _digits_from(account_number, "card", 14)
    number = partial + luhn_check_digit(partial)
    return " ".join(number[i : i + 4] for i in range(0, 16, 4))


def sort_code_for(account_number: str) -> str:
    """The branch sort code of an account, like ``60-16-13``."""
    digits = "6" + _digits_from(account_number, "sort", 5)
    return f"{digits[0:2]}-{digits[2:4]}-{digits[4:6]}"


def iban_for(account_number: str) -> str:
    """The GB IBAN of an account, with valid check digits, printed in groups of four."""
    bban = BANK_CODE + sort_code_for(account_number).replace("-", "") + account_number
    rearranged = bban + "GB00"
    numeric = "".join(str(int(char, 36)) for char in rearranged)
    check = 98 - int(numeric) % 97
    iban = f"GB{check:02d}{bban}"
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


def random_mobile(rng: random.Random) -> str:
    """A UK mobile number in the international style the CRM stores: ``+44 7700 900123``."""
    return f"+44 7{rng.randrange(1000):03d} {rng.randrange(1_000_000):06d}"


def restyle_phone(phone: str, rng: random.Random) -> str:
    """The same number as a customer might type it: national, international, spaced or not."""
    national = "0" + phone.removeprefix("+44 ").replace(" ", "")
    style = rng.randrange(4)
    if style == 0:
        return phone
    if style == 1:
        return f"{national[:5]} {national[5:]}"
    if style == 2:
        return national
    return "+44" + national[1:]
