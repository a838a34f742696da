import decimal

from billing_site.celery import app as celery_app

# Amounts are Decimals throughout (usage up to 1e20 with up to 10+ decimal places, prices in
# fractions of a minor unit), and Python's default context keeps 28 significant digits: a
# subtraction, product or sum beyond that would be rounded silently before the one half-up
# rounding the billing rules ask for. 100 digits keep every sum and product of accepted amounts
# exact. Set here, on import of the project package (settings, Celery, WSGI all import it), for
# this thread and for every thread started later (their contexts copy DefaultContext).
decimal.DefaultContext.prec = 100
decimal.getcontext().prec = 100

__all__ = ["celery_app"]
