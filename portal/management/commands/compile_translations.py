"""Compile the portal's .po files to the .mo files Django reads, in pure Python (Babel), so an
install needs no GNU gettext. The .mo files are build output (not in git): ./scripts/test,
./scripts/demo and CI run this first."""

from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from django.core.management.base import BaseCommand

LOCALE_DIR = Path(__file__).resolve().parents[2] / "locale"


def compile_translations() -> list[Path]:
    """Write every locale/*/LC_MESSAGES/*.mo next to its .po; returns the files written."""
    written = []
    for po_path in sorted(LOCALE_DIR.glob("*/LC_MESSAGES/*.po")):
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=po_path.parts[-3])
        mo_path = po_path.with_suffix(".mo")
        with mo_path.open("wb") as mo_file:
            write_mo(mo_file, catalog)
        written.append(mo_path)
    return written


class Command(BaseCommand):
    help = "Compile the customer portal's translations (.po -> .mo) without GNU gettext."

    def handle(self, *args, **options) -> None:
        for path in compile_translations():
            self.stdout.write(f"compiled {path}")
