"""Checks of single values: one function per kind of setting, returning None when the
value is fine, else what is allowed (the registry puts it in one line of refusal)."""

from __future__ import annotations

import os
import re

from .environ import PASSWORD_ENV

_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_URL_PATH = re.compile(r"/([A-Za-z0-9._~-]+/)*")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_ARGON2 = re.compile(r"argon2:\$argon2id?\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+")
# A hub admin's first password: argon2 (PHC string, with or without Jupyter's "argon2:") or bcrypt.
_HUB_PASSWORD_HASH = re.compile(
    r"(argon2:)?\$argon2id?\$v=\d+\$m=\d+,t=\d+,p=\d+\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+|\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}"
)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_port(value):
    if _is_int(value) and 1 <= value <= 65535:
        return None
    return "an integer from 1 to 65535"


def check_base_url(value):
    if isinstance(value, str) and _URL_PATH.fullmatch(value):
        return None
    return "a URL path that starts and ends with '/', without spaces (e.g. '/jupyter/')"


def check_user(value):
    if isinstance(value, str) and _USER_NAME.fullmatch(value) and value != "root":
        return None
    return "a lowercase system user name (not root), e.g. 'jupyter'"


def check_password_hash(value):
    if value is None or (isinstance(value, str) and _ARGON2.fullmatch(value)):
        return None
    if isinstance(value, str) and value.startswith("sha1:"):
        return "an 'argon2:' hash; sha1 hashes are too weak, make a new one (see docs/sign-in.md, 'Passwords')"
    return (
        "an 'argon2:$argon2id$...' hash (this does not look like one: if it is a plaintext "
        f"password, put it in the {PASSWORD_ENV} environment variable instead)"
    )


def check_basic_auth_user(value):
    if value is None or (isinstance(value, str) and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", value)):
        return None
    return "None (off) or a user name of letters, digits, '.', '_' or '-'"


def check_directives(value):
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and "\n" not in v for v in value):
        return None
    return "a list of Apache directive lines (strings without newlines)"


def check_url(value):
    if isinstance(value, str) and re.fullmatch(r"https?://[^\s/]+/\S*", value):
        return None
    return "an http:// or https:// URL"


def check_sha256(value):
    if isinstance(value, str) and _HEX64.fullmatch(value):
        return None
    return "64 hexadecimal characters (the installer's published sha256)"


_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")


def check_email(value):
    if value == "" or (isinstance(value, str) and _EMAIL.fullmatch(value)):
        return None
    return "an e-mail address, or '' to register the ACME account without one"


def check_https_url(value):
    if isinstance(value, str) and re.fullmatch(r"https://[^\s/'\"]+/[^\s'\"]*", value):
        return None
    return "an https:// URL (an ACME directory, e.g. Let's Encrypt's)"


def check_https_url_or_none(value):
    if value is None or (isinstance(value, str) and re.fullmatch(r"https://[^\s/'\"]+(/[^\s'\"]*)?", value)):
        return None
    return "None or an https:// URL (the provider's issuer, as its discovery document names it)"


def check_client_id(value):
    if value is None or (isinstance(value, str) and re.fullmatch(r"[\x21-\x7e]{1,255}", value) and '"' not in value):
        return None
    return "None or the client ID the provider gave (printable, no spaces or quotes)"


# A group name of a groups claim, after "group:".
_GROUP = re.compile(r"[A-Za-z0-9._@-]{1,128}")


def check_oidc_allowed(value):
    if isinstance(value, (list, tuple)) and all(
        isinstance(v, str)
        and (_EMAIL.fullmatch(v) or (v.startswith("group:") and _GROUP.fullmatch(v.removeprefix("group:"))))
        for v in value
    ):
        return None
    return "a list of e-mail addresses and 'group:NAME' values (NAME: letters, digits, '.', '_', '@', '-')"


def check_address_or_none(value):
    if value is None or (isinstance(value, str) and _EMAIL.fullmatch(value)):
        return None
    return "None or a person's e-mail address (as they sign in with it)"


# A host name as restic records it (the machine's hostname: letters, digits, dots, hyphens).
_HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def check_host_name_or_none(value):
    if value is None or (isinstance(value, str) and _HOST_NAME.fullmatch(value)):
        return None
    return "None or the host name of the replaced host, as 'restic snapshots' shows it (letters, digits, '.', '-')"


def check_addresses(value):
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and _EMAIL.fullmatch(v) for v in value):
        return None
    return "a list of e-mail addresses (as the provider's email claim gives them)"


def check_hub_password_hashes(value):
    if isinstance(value, dict) and all(
        isinstance(k, str) and _EMAIL.fullmatch(k) and isinstance(v, str) and _HUB_PASSWORD_HASH.fullmatch(v)
        for k, v in value.items()
    ):
        return None
    return (
        "a dict of hub_admins addresses to an argon2 ('$argon2id$...') or bcrypt ('$2b$...') hash made on the "
        "control machine (see docs/per-person.md, 'Passwords'), never a password"
    )


def check_ca_bundle(value):
    # Read on the control machine, before any host is touched: a typo in the path
    # fails here rather than as a TLS error from certbot on every host.
    if value == "":
        return None
    try:
        text = open(value, encoding="ascii").read() if isinstance(value, str) else ""
    except (OSError, UnicodeDecodeError):
        text = ""
    if "-----BEGIN CERTIFICATE-----" in text and "PRIVATE KEY" not in text:
        return None
    return "'' or the path of a readable local PEM file of CA certificates (no private keys)"


# A conda match spec without spaces: [channel::]name[version/build constraints].
_CONDA_SPEC = re.compile(r"([A-Za-z0-9_.-]+::)?[A-Za-z0-9_][A-Za-z0-9_.-]*([=<>!~][A-Za-z0-9_.*=<>!~,+-]*)?")
# A PEP 508 requirement written without spaces: name, extras, version specifiers, no URL
# (``name @ url``), no environment markers (``;``), nothing the shell or pip reads specially.
_PIP_SPEC = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?(\[[A-Za-z0-9._,-]+\])?((===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!-]+(,(===|==|!=|~=|<=|>=|<|>)[A-Za-z0-9.*+!-]+)*)?"
)
_SIZE = re.compile(r"[1-9][0-9]*[KMGT]")
_PERCENT = re.compile(r"([1-9][0-9]?)%")


def _spec_list(pattern, example):
    def check(value):
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) and pattern.fullmatch(v) for v in value):
            if len(set(value)) == len(value):
                return None
            return "a list without repeated entries"
        bad = (
            [v for v in value if not (isinstance(v, str) and pattern.fullmatch(v))]
            if isinstance(value, (list, tuple))
            else []
        )
        what = f" ({bad[0]!r} is not one)" if bad else ""
        return f"a list of {example}{what}"

    return check


check_conda_packages = _spec_list(
    _CONDA_SPEC,
    "conda package specs without spaces, e.g. ['numpy', 'scipy>=1.11', 'conda-forge::xarray']",
)
check_pip_packages = _spec_list(
    _PIP_SPEC,
    "PEP 508 names with optional [extras] and versions, no spaces, URLs or markers, e.g. ['requests>=2.31']",
)


def check_requirements_file(value):
    # Read on the control machine, before any host is touched, and checked line by line
    # with the same rule as pip_packages: no options (-e, --index-url, -r), no URLs.
    if value == "":
        return None
    what = "'' or the path of a readable local requirements file of PEP 508 specs (one per line, no options or URLs)"
    try:
        lines = open(value, encoding="utf-8").read().splitlines() if isinstance(value, str) else None
    except (OSError, UnicodeDecodeError):
        lines = None
    if lines is None:
        return what
    for number, line in enumerate(lines, start=1):
        spec = line.split("#", 1)[0].strip()
        if spec and not _PIP_SPEC.fullmatch(spec):
            return f"{what}; line {number} is {spec!r}"
    return None


def check_memory_limit(value):
    if value is None:
        return None
    if isinstance(value, str):
        percent = _PERCENT.fullmatch(value)
        if percent and 10 <= int(percent.group(1)) <= 95:
            return None
        if _SIZE.fullmatch(value) and size_bytes(value) >= 256 * 2**20:
            return None
    return (
        "None (no limit), a size of at least 256M (e.g. '2G', '1536M') "
        "or a percentage of the host's RAM from 10% to 95% (e.g. '80%')"
    )


def check_request_size(value):
    if isinstance(value, str) and _SIZE.fullmatch(value) and 2 * 2**20 <= size_bytes(value) <= 2**30:
        return None
    return "a size from 2M to 1G, e.g. '100M' (the largest notebook saved in one request)"


def size_bytes(size: str) -> int:
    """``'2G'`` -> bytes (K, M, G, T are powers of 1024, as systemd reads them)."""
    return int(size[:-1]) * 1024 ** ("KMGT".index(size[-1]) + 1)


def check_cpu_limit(value):
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and 0.1 <= value <= 1024):
        return None
    return "None (no limit) or a number of CPU cores from 0.1, e.g. 1.5"


def check_hours(minimum, maximum):
    def check(value):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and minimum <= value <= maximum:
            return None
        return f"a number of hours from {minimum} to {maximum}, e.g. 24 or 0.5"

    return check


def check_days(minimum, maximum):
    def check(value):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and minimum <= value <= maximum:
            return None
        return f"a number of days from {minimum} to {maximum}, e.g. 7 or 0.5"

    return check


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY = "(?:" + "|".join(WEEKDAYS) + ")"
_DAYS = rf"daily|{_DAY}(?:-{_DAY})?(?:,{_DAY}(?:-{_DAY})?)*"
_TIME = "([01][0-9]|2[0-3]):([0-5][0-9])"
_WINDOW = re.compile(rf"({_DAYS}) {_TIME}-{_TIME}")


def reboot_window(value: str) -> tuple[list[int], int, int]:
    """A ``reboot_window`` (checked) as (the days it opens, 1 = Monday .. 7 = Sunday as
    ``date +%u``; the minute after midnight it opens; how many minutes it stays open). A
    window whose end is before its start closes the next day ('Sat 23:00-01:00')."""
    match = _WINDOW.fullmatch(value)
    days_text, start_h, start_m, end_h, end_m = match.groups()
    days: set[int] = set()
    if days_text == "daily":
        days = set(range(1, 8))
    else:
        for part in days_text.split(","):
            first, _, last = part.partition("-")
            a, b = WEEKDAYS.index(first) + 1, WEEKDAYS.index(last or first) + 1
            days.update(range(a, b + 1) if a <= b else [*range(a, 8), *range(1, b + 1)])
    start, end = int(start_h) * 60 + int(start_m), int(end_h) * 60 + int(end_m)
    return sorted(days), start, (end - start) % 1440


def check_reboot_window(value):
    if value is None or (isinstance(value, str) and _WINDOW.fullmatch(value) and reboot_window(value)[2] > 0):
        return None
    return (
        "None (never reboot, only report) or 'DAYS HH:MM-HH:MM' in the host's time, DAYS 'daily' or days "
        "like 'Sun', 'Sat,Sun', 'Mon-Fri', e.g. 'Sun 03:00-05:00'"
    )


def check_seconds(minimum, maximum, zero_ok=False):
    def check(value):
        if _is_int(value) and (minimum <= value <= maximum or (zero_ok and value == 0)):
            return None
        return f"{'0 (never) or ' if zero_ok else ''}a whole number of seconds from {minimum} to {maximum}"

    return check


def one_of(*allowed):
    def check(value):
        if value in allowed:
            return None
        return "one of " + ", ".join(repr(a) for a in allowed)

    return check


def check_count(minimum, maximum):
    def check(value):
        if _is_int(value) and minimum <= value <= maximum:
            return None
        return f"a whole number from {minimum} to {maximum}"

    return check


# systemd OnCalendar expressions: 'daily', 'Mon..Fri 02:00', '*-*-* 03:30:00', ...
# (the host's systemd-analyze checks the expression itself before the timer is written).
_CALENDAR = re.compile(r"[A-Za-z0-9*:,./~ +-]{1,100}")


def check_calendar(value):
    if value is None or (isinstance(value, str) and _CALENDAR.fullmatch(value) and value.strip() == value):
        return None
    return (
        "None (daily, at a time of night derived from the host name) or a systemd OnCalendar "
        "expression, e.g. 'daily', '*-*-* 02:30:00', 'Mon..Fri 22:00'"
    )


KEEP_KINDS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")


def check_keep(value):
    if (
        isinstance(value, dict)
        and value
        and all(k in KEEP_KINDS for k in value)
        and all(_is_int(n) and 0 <= n <= 10000 for n in value.values())
        and any(value.values())
    ):
        return None
    return (
        f"a dict of snapshot counts to keep by {', '.join(KEEP_KINDS)} (at least one above 0), "
        "e.g. {'daily': 7, 'weekly': 4, 'monthly': 12}"
    )


def check_local_file_or_empty(value):
    if value == "" or (isinstance(value, str) and os.path.isfile(value) and os.access(value, os.R_OK)):
        return None
    return "'' or the path of a readable file on the control machine"


def check_snapshot(value):
    if value == "latest" or (isinstance(value, str) and re.fullmatch(r"[0-9a-f]{8,64}", value)):
        return None
    return "'latest' or a restic snapshot id (8 to 64 hex digits, as 'restic snapshots' shows it)"


def check_bool(value):
    if isinstance(value, bool):
        return None
    return "true or false"
