"""An invoice as a PDF, drawn with fpdf2 (pure Python: no browser, fonts or network needed).

The same content as the printable page (products/invoice_print.html): who is billed, the
period, every line with units, prices and amounts, the total. fpdf2's built-in fonts cover
Latin-1; other characters are replaced, so a name in another script still renders, as "?".
"""

from __future__ import annotations

from fpdf import FPDF

from billing_site.money import format_minor
from products.models import Invoice

TITLES = {"invoice": "Invoice", "credit_note": "Credit note"}
COLUMNS = [  # (header, width in mm, alignment)
    ("Description", 70, "L"),
    ("Consumed", 20, "R"),
    ("Free", 16, "R"),
    ("Chargeable", 22, "R"),
    ("Unit price", 20, "R"),
    ("Credits", 16, "R"),
    ("Amount", 26, "R"),
]


def _latin1(text: object) -> str:
    return str(text).encode("latin-1", "replace").decode("latin-1")


def _cell_text(value: object) -> str:
    return "" if value is None else _latin1(value)


def invoice_pdf(invoice: Invoice) -> bytes:
    """The PDF bytes of one invoice or credit note."""
    pdf = FPDF(format="A4")
    pdf.set_title(_latin1(f"{TITLES[invoice.kind]} {invoice.number or invoice.invoice_id}"))
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    heading = f"{TITLES[invoice.kind]} {invoice.number or '(draft)'}"
    pdf.cell(0, 10, _latin1(heading), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    issued = invoice.issued_at.strftime("%Y-%m-%d %H:%M UTC") if invoice.issued_at else "not yet"
    facts = [
        f"Invoice id {invoice.invoice_id} - status {invoice.status} - issued {issued}",
        f"Billed to {invoice.customer.name} <{invoice.customer.email}> ({invoice.customer_id})",
        f"{invoice.subscription.product.name} - subscription {invoice.subscription_id}",
        f"Period {invoice.period_start:%Y-%m-%d %H:%M} to {invoice.period_end:%Y-%m-%d %H:%M} UTC",
    ]
    if invoice.corrects_id:
        facts.append(f"Corrects invoice {invoice.corrects_id}")
    if invoice.replaces_id:
        facts.append(f"Replaces invoice {invoice.replaces_id}")
    for fact in facts:
        pdf.cell(0, 5, _latin1(fact), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 8)
    for header, width, align in COLUMNS:
        pdf.cell(width, 6, header, border="B", align=align)
    pdf.ln()
    pdf.set_font("Helvetica", "", 8)

    def row(values: list) -> None:
        for (_, width, align), value in zip(COLUMNS, values, strict=True):
            text = _cell_text(value)
            while width > 0 and pdf.get_string_width(text) > width - 1 and len(text) > 1:
                text = text[:-2] + "~"  # a long description is cut, never overflows
            pdf.cell(width, 6, text, border="B", align=align)
        pdf.ln()

    for line in invoice.lines.all():
        row(
            [
                line.description,
                line.consumed_units,
                line.free_units,
                line.chargeable_units,
                line.unit_price,
                line.credits_applied,
                format_minor(line.amount_minor, invoice.currency),
            ]
        )
        for tier in line.tiers or ():  # a tiered price's breakdown (exact, before rounding)
            bound = f"up to {tier['up_to']}" if tier["up_to"] is not None else "above"
            fee = f" + {tier['flat_fee']} flat" if tier["flat_fee"] else ""
            label = f"  tier {bound}{fee}: {tier['amount']} exact"
            row([label, None, None, tier["units"], tier["unit_price"], None, None])
    pdf.set_font("Helvetica", "B", 9)
    total_width = sum(width for _, width, _ in COLUMNS[:-1])
    pdf.cell(total_width, 7, "Total", align="L")
    pdf.cell(COLUMNS[-1][1], 7, format_minor(invoice.total_minor, invoice.currency), align="R")
    return bytes(pdf.output())
