"""operations/jupyter/people.py: a person's account name from their address (per_person_servers)."""

from __future__ import annotations

import pwd

import pytest

from operations import people


def test_a_name_is_readable_short_and_valid_for_adduser():
    name = people.unix_name("Ann.Smith@Example.ORG")
    assert name.startswith("jupyter-ann-smith-") and len(name) <= people.MAX_LENGTH
    assert people.VALID_NAME.fullmatch(name)
    # The same person however the provider spells the address.
    assert people.unix_name("  ann.smith@example.org ") == name


@pytest.mark.parametrize(
    "one, other",
    [
        ("a.b@x.org", "a-b@x.org"),  # read alike once cleaned
        ("ann@x.org", "ann@y.org"),  # same local part, other domain
        ("a" * 40 + "1@x.org", "a" * 40 + "2@x.org"),  # alike in the part that fits
        ("ann+course@x.org", "ann@x.org"),
    ],
)
def test_two_addresses_never_share_an_account(one, other):
    assert people.unix_name(one) != people.unix_name(other)


def test_many_addresses_give_as_many_names():
    addresses = [f"student{i}@uni{i % 7}.example" for i in range(5000)]
    assert len({people.unix_name(address) for address in addresses}) == len(addresses)


@pytest.mark.parametrize(
    "address",
    ["root@x.org", "www-data@x.org", "jupyter@x.org", "daemon@local.host", "-x@x.org", "_@x.org", "'@x.org"],
)
def test_no_name_is_a_system_account_or_invalid(address):
    name = people.unix_name(address)
    assert name.startswith(people.PREFIX) and people.VALID_NAME.fullmatch(name)
    assert name not in {entry.pw_name for entry in pwd.getpwall()}


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ann",
        "ann@",
        "@x.org",
        "a@b@c.org",
        "ann smith@x.org",
        "ann@x.org\x1b[2J",
        "a:b@x.org",
        "a,b@x.org",
        "ü@x.org",
        "ann@localhost",
    ],
)
def test_what_is_not_an_address_is_refused(value):
    with pytest.raises(people.NotAnAddress):
        people.unix_name(value)


def test_an_account_is_only_ever_its_persons():
    assert people.owned_by(people.comment("Ann@X.org"), "ann@x.org")
    assert not people.owned_by(people.comment("bob@x.org"), "ann@x.org")
    assert not people.owned_by("Jupyter Notebook (jupyter-apache-deploy)", "ann@x.org")
    assert not people.owned_by("", "ann@x.org")


@pytest.mark.parametrize("address", ["ann@x.org", "o'brien+lab@mail.example.ac.uk", "a.b_c%d-e@x-y.org"])
def test_the_accounts_comment_is_one_field_useradd_takes(address):
    # useradd refuses ':' (it separates /etc/passwd's fields) and a newline; ',' would split
    # the comment into GECOS sub-fields.
    comment = people.comment(address)
    assert comment.isprintable() and not set(":,\n") & set(comment), comment
    assert comment.endswith(address)
