"""The portal speaks the customer's language: preferred_locale, else Accept-Language, else
English; numbers, money and dates are written as that locale writes them."""

from __future__ import annotations

import pytest

from products.models import Customer
from tests.portal.helpers import make_world, portal_client

pytestmark = pytest.mark.django_db


def _page(customer, path="/portal/", **headers) -> str:
    response = portal_client(customer).get(path, **headers)
    assert response.status_code == 200
    return response.content.decode()


def test_german_from_preferred_locale():
    world = make_world(ada_calls=2500)
    Customer.objects.filter(pk=world.ada.customer.pk).update(preferred_locale="de-DE")
    world.ada.customer.refresh_from_db()
    home = _page(world.ada.customer, HTTP_ACCEPT_LANGUAGE="sv")
    assert '<html lang="de">' in home
    assert "Abonnements" in home and "Bisherige Kosten" in home
    assert "10,02\xa0$" in home  # 1002 cents, as German writes dollars
    history = _page(world.ada.customer, "/portal/history/")
    # The closed month: 2500 calls, 2490 chargeable x 0.5 = 1245 cents.
    assert "2.500" in history and "2.490" in history and "12,45\xa0$" in history


@pytest.mark.parametrize(
    ("accept", "word", "money"),
    [
        ("sv-SE,sv;q=0.9", "Prenumerationer", "US$"),
        ("it", "Abbonamenti", "10,02\xa0USD"),
        ("hi-IN,hi;q=0.9,en;q=0.5", "सदस्यताएँ", "$10.02"),
        ("de-CH, en;q=0.5", "Abonnements", None),
        ("fr-FR, ja", "Subscriptions", "$10.02"),  # a language the portal does not speak
        ("", "Subscriptions", "$10.02"),
    ],
)
def test_accept_language_without_a_preferred_locale(accept, word, money):
    world = make_world()
    home = _page(world.ada.customer, HTTP_ACCEPT_LANGUAGE=accept)
    assert word in home
    if money:
        assert money in home


def test_preferred_locale_of_another_language_falls_back_to_the_browser():
    world = make_world()
    Customer.objects.filter(pk=world.ada.customer.pk).update(preferred_locale="fr-FR")
    world.ada.customer.refresh_from_db()
    assert "Prenumerationer" in _page(world.ada.customer, HTTP_ACCEPT_LANGUAGE="sv")


def test_every_page_is_translated():
    world = make_world()
    Customer.objects.filter(pk=world.ada.customer.pk).update(preferred_locale="de")
    world.ada.customer.refresh_from_db()
    client = portal_client(world.ada.customer)
    expected = {
        "/portal/": "Nächstes Abrechnungsdatum",
        "/portal/history/": "Nutzungsverlauf",
        "/portal/invoices/": "Rechnungen",
        "/portal/credits/": "Guthabenstände",
        "/portal/events/": "CSV herunterladen",
    }
    for path, text in expected.items():
        response = client.get(path)
        assert text in response.content.decode(), path
        assert response["Content-Language"] == "de"


def test_the_refusal_page_follows_the_browser(client):
    response = client.get("/portal/", HTTP_ACCEPT_LANGUAGE="it")
    assert response.status_code == 403
    assert "Questo link non funziona" in response.content.decode()


def test_the_translations_compile_from_the_po_files():
    """The .mo files are build output, written from the .po files without GNU gettext; every
    message of every language is translated."""
    import gettext

    from babel.messages.pofile import read_po

    from portal.management.commands.compile_translations import compile_translations

    written = compile_translations()
    assert sorted(path.parts[-3] for path in written) == ["de", "hi", "it", "sv"]
    for path in written:
        with path.with_suffix(".po").open("rb") as po_file:
            catalog = read_po(po_file)
        untranslated = [m.id for m in catalog if m.id and not m.string]
        assert untranslated == [], (path, untranslated)
        with path.open("rb") as mo_file:
            translations = gettext.GNUTranslations(mo_file)
        assert translations.gettext("Subscriptions") != "Subscriptions"
