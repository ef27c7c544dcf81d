import pytest

from app.domain.errors import ValidationFailed
from app.domain.usernames import email_address, normalise_username, username_problem


@pytest.mark.parametrize("name", ["anna", "Anna", "acme-anna", "a1", "a.b_c-d", "x" * 64, "bot", "botx1", "robot1"])
def test_valid_usernames(name):
    assert username_problem(name) is None


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("a", "at least 2"),
        ("", "at least 2"),
        ("-anna", "start and end"),
        ("anna-", "start and end"),
        (".anna", "start and end"),
        ("an na", "start and end"),
        ("anna@x", "start and end"),
        ("ånna", "start and end"),
        ("x" * 65, "at most 64"),
        ("bot1", "reserved"),
        ("BOT42", "reserved"),
        ("Bot007", "reserved"),
        (42, "string"),
    ],
)
def test_invalid_usernames(name, fragment):
    assert fragment in username_problem(name)


def test_stored_lowercase_and_error_names_field():
    assert normalise_username("Acme-Anna") == "acme-anna"
    with pytest.raises(ValidationFailed) as caught:
        normalise_username("bot1")
    assert caught.value.field == "layers.conferencing.username"


def test_email_address():
    assert email_address("Anna", "TavusInvite.com") == "anna@tavusinvite.com"
