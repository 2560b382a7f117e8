"""The demo's Celery app and tasks: invoice charges and PDF renders that sleep, fail or overrun a time limit.

Workers run `python -m celery -A queuewatch.demo.celery_app --broker URL worker -E ...` (celery turns
`--broker` into CELERY_BROKER_URL before it loads this module); the producer sets `app.conf.broker_url`.
"""
from __future__ import annotations

import time

from celery import Celery

BILLING_QUEUE = "billing"
PDF_QUEUE = "pdf-render"
CELERY_QUEUES = (BILLING_QUEUE, PDF_QUEUE)
PDF_TIME_LIMIT_S = 2
"""Hard time limit of a PDF render: the prefork pool kills a render that runs longer (TimeLimitExceeded)."""
CHARGE_TASK = "billing.charge_invoice"
RENDER_TASK = "pdf.render_document"


class CardDeclinedError(RuntimeError):
    """The payment provider declined a charge."""


class PdfFontError(RuntimeError):
    """A document uses a font the renderer cannot embed."""


def _work(work_ms: float) -> None:
    """Spend `work_ms` milliseconds (sleeping, so the demo does not load the CPU)."""
    time.sleep(max(0.0, work_ms) / 1000.0)


def charge_invoice(invoice_id: int, amount_cents: int, work_ms: float, fail: bool = False) -> str:
    """Charge one invoice through the payment provider."""
    _work(work_ms)
    if fail:
        raise CardDeclinedError(f"invoice {invoice_id}: card declined (insufficient_funds), "
                                f"{amount_cents} cents")
    return f"invoice {invoice_id} charged {amount_cents} cents"


def render_document(document_id: int, pages: int, work_ms: float, fail: bool = False) -> str:
    """Render one document to PDF."""
    _work(work_ms)
    if fail:
        raise PdfFontError(f"document {document_id}: cannot embed font 'Helvetica Neue' (license restricted)")
    return f"document {document_id}: {pages} pages rendered"


app = Celery("queuewatch_demo")
app.conf.update(
    task_send_sent_event=True,
    task_routes={CHARGE_TASK: {"queue": BILLING_QUEUE}, RENDER_TASK: {"queue": PDF_QUEUE}},
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
)
charge_invoice_task = app.task(name=CHARGE_TASK)(charge_invoice)
render_document_task = app.task(name=RENDER_TASK, time_limit=PDF_TIME_LIMIT_S)(render_document)
